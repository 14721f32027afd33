"""Team quotas: a tenant cannot take more of the shared nodes (apps, replicas, memory) than the platform admin gave
its team, and cannot raise its own quota.

Over a quota the API answers 409 (the request is valid; the team's current usage is what it clashes with, and it
succeeds once something is freed) with a `detail` line and the quota, limit and usage; nothing is half-applied.
"""

import pytest

from tests.cli.conftest import assert_one_error_line, ok, run_berth

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_team(make_user, make_team, token_client):
    from types import SimpleNamespace

    owner = make_user()
    team = make_team(owner=owner)
    return SimpleNamespace(owner=owner, team=team, client=token_client(owner))


@pytest.fixture
def superuser(make_user):
    return make_user(is_superuser=True, is_staff=True)


def test_an_app_over_the_apps_quota_is_409_naming_the_quota_and_nothing_is_created(tenant_team, settings):
    from berth.apps.models import App

    settings.BERTH_TEAM_MAX_APPS = 2
    for name in ("q-one", "q-two"):
        assert tenant_team.client.post("/api/v1/apps", {"name": name}, format="json").status_code == 201
    response = tenant_team.client.post("/api/v1/apps", {"name": "q-three"}, format="json")
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["quota"] == "apps" and body["limit"] == 2 and body["usage"] == 2 and body["requested"] == 3
    assert "apps quota" in body["detail"] and "2" in body["detail"]
    assert not App.objects.filter(name="q-three").exists()


def test_a_teams_own_quota_overrides_the_installation_default(tenant_team, settings):
    settings.BERTH_TEAM_MAX_APPS = 50
    tenant_team.team.max_apps = 1
    tenant_team.team.save()
    assert tenant_team.client.post("/api/v1/apps", {"name": "q-only"}, format="json").status_code == 201
    assert tenant_team.client.post("/api/v1/apps", {"name": "q-more"}, format="json").status_code == 409


def test_scaling_over_the_replicas_quota_is_409_and_changes_nothing(tenant_team, make_app, settings):
    settings.BERTH_TEAM_MAX_REPLICAS = 5
    make_app("q-rep", team=tenant_team.team, actor=tenant_team.owner)
    ok_scale = tenant_team.client.patch(
        "/api/v1/apps/q-rep/formation", [{"process": "web", "replicas": 5}], format="json"
    )
    assert ok_scale.status_code == 200, ok_scale.content
    response = tenant_team.client.patch(
        "/api/v1/apps/q-rep/formation", [{"process": "web", "replicas": 6}], format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["quota"] == "replicas" and response.json()["usage"] == 5
    formation = tenant_team.client.get("/api/v1/apps/q-rep/formation").json()
    assert [(row["process"], row["replicas"]) for row in formation] == [("web", 5)]


def test_replicas_count_across_all_the_teams_apps(tenant_team, make_app, settings):
    settings.BERTH_TEAM_MAX_REPLICAS = 4
    make_app("q-a", team=tenant_team.team, actor=tenant_team.owner)
    make_app("q-b", team=tenant_team.team, actor=tenant_team.owner)  # its first release will start web=1
    response = tenant_team.client.patch(
        "/api/v1/apps/q-a/formation", [{"process": "web", "replicas": 4}], format="json"
    )
    assert response.status_code == 409 and response.json()["requested"] == 5


def test_memory_is_replicas_times_each_process_limit(tenant_team, make_app, settings):
    settings.BERTH_TEAM_MAX_MEMORY_MB = 1024
    settings.BERTH_PROCESS_MEMORY_MB = 256
    make_app("q-mem", team=tenant_team.team, actor=tenant_team.owner)
    assert (
        tenant_team.client.patch(
            "/api/v1/apps/q-mem/formation", [{"process": "web", "replicas": 4}], format="json"
        ).status_code
        == 200
    )  # 4 x 256 = 1024
    response = tenant_team.client.patch(
        "/api/v1/apps/q-mem/formation", [{"process": "web", "memory_mb": 512}], format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["quota"] == "memory_mb" and response.json()["requested"] == 2048
    # a change in the same request that would fit is not applied either: all or nothing
    response = tenant_team.client.patch(
        "/api/v1/apps/q-mem/formation",
        [{"process": "web", "replicas": 1}, {"process": "web", "memory_mb": 2048}],
        format="json",
    )
    assert response.status_code == 409
    formation = tenant_team.client.get("/api/v1/apps/q-mem/formation").json()
    assert [(r["replicas"], r["memory_mb"]) for r in formation] == [(4, None)]


def test_a_team_over_a_lowered_quota_can_still_scale_down(tenant_team, make_app, settings):
    make_app("q-down", team=tenant_team.team, actor=tenant_team.owner)
    tenant_team.client.patch(
        "/api/v1/apps/q-down/formation", [{"process": "web", "replicas": 8}], format="json"
    )
    settings.BERTH_TEAM_MAX_REPLICAS = 2
    response = tenant_team.client.patch(
        "/api/v1/apps/q-down/formation", [{"process": "web", "replicas": 3}], format="json"
    )
    assert response.status_code == 200, response.content


def test_members_read_their_quota_and_usage(tenant_team, make_app, settings):
    settings.BERTH_TEAM_MAX_APPS = 7
    make_app("q-read", team=tenant_team.team, actor=tenant_team.owner)
    response = tenant_team.client.get(f"/api/v1/teams/{tenant_team.team.name}/quotas")
    assert response.status_code == 200, response.content
    assert response.json()["quotas"]["apps"] == {"limit": 7, "own": None, "usage": 1}
    assert response.json()["quotas"]["replicas"]["usage"] == 1


def test_a_team_owner_cannot_raise_their_own_quota(tenant_team):
    response = tenant_team.client.patch(
        f"/api/v1/teams/{tenant_team.team.name}/quotas", {"apps": 1000}, format="json"
    )
    assert response.status_code == 403, response.content
    assert "platform-admin" in response.json()["detail"]
    tenant_team.team.refresh_from_db()
    assert tenant_team.team.max_apps is None


def test_an_outsider_cannot_read_another_teams_quota(tenant_team, make_user, token_client):
    response = token_client(make_user()).get(f"/api/v1/teams/{tenant_team.team.name}/quotas")
    assert response.status_code == 404


def test_a_platform_admin_sets_and_resets_a_teams_quotas(tenant_team, superuser, token_client, settings):
    settings.BERTH_TEAM_MAX_REPLICAS = 100
    admin = token_client(superuser)
    url = f"/api/v1/teams/{tenant_team.team.name}/quotas"
    response = admin.patch(url, {"apps": 3, "replicas": 0, "memory_mb": 4096}, format="json")
    assert response.status_code == 200, response.content
    quotas = response.json()["quotas"]
    assert (
        quotas["apps"]["limit"] == 3
        and quotas["replicas"]["limit"] == 0
        and quotas["memory_mb"]["own"] == 4096
    )
    assert admin.patch(url, {"replicas": None}, format="json").json()["quotas"]["replicas"]["limit"] == 100
    for bad in ({"apps": -1}, {"apps": "many"}, {"cpus": 3}, {}):
        refused = admin.patch(url, bad, format="json")
        assert refused.status_code == 400, (bad, refused.content)
    tenant_team.team.refresh_from_db()
    assert tenant_team.team.max_apps == 3


def test_the_quota_endpoint_is_documented_with_its_errors(token_client, superuser):
    schema = token_client(superuser).get("/api/v1/schema/", {"format": "json"}).json()
    operations = schema["paths"]["/api/v1/teams/{team}/quotas"]
    assert {"400", "401", "403", "404"} <= set(operations["patch"]["responses"])
    assert "409" in schema["paths"]["/api/v1/apps/{app}/formation"]["patch"]["responses"]


@pytest.mark.django_db(transaction=True)
def test_the_cli_says_over_quota_in_one_line_and_exits_1(
    live_server, tmp_path, make_user, make_team, settings
):
    from berth.accounts.services import token_create

    settings.BERTH_TEAM_MAX_APPS = 1
    owner = make_user()
    team = make_team(owner=owner)
    admin = make_user(is_superuser=True)
    env = {"BERTH_URL": live_server.url, "BERTH_TOKEN": token_create(user=owner, name="cli")[1]}
    ok(run_berth("apps:create", "q-cli-1", "--team", team.name, home=tmp_path, env=env))
    result = run_berth("apps:create", "q-cli-2", "--team", team.name, home=tmp_path, env=env)
    assert_one_error_line(result, contains="apps quota")
    raise_own = run_berth("teams:quotas", team.name, "--apps", "5", home=tmp_path, env=env)
    assert_one_error_line(raise_own, contains="platform-admin")
    shown = ok(run_berth("teams:quotas", team.name, home=tmp_path, env=env))
    assert "apps" in shown and "1" in shown

    admin_env = {**env, "BERTH_TOKEN": token_create(user=admin, name="cli")[1]}
    ok(run_berth("teams:quotas", team.name, "--apps", "2", home=tmp_path, env=admin_env))
    ok(run_berth("apps:create", "q-cli-2", "--team", team.name, home=tmp_path, env=env))
    reset = ok(
        run_berth("teams:quotas", team.name, "--apps", "default", "--json", home=tmp_path, env=admin_env)
    )
    assert '"own": null' in reset

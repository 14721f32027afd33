"""API v1 behaviour against the contract: shapes, bad input (400 naming the field), duplicates (409), scoping."""

import pytest
from berth.accounts.models import ApiToken
from berth.apps.models import App, ConfigVar, Formation
from berth.audit.models import AuditEvent
from berth.releases.models import Release


@pytest.fixture
def owner(world):
    return world.client("owner")


def test_sign_in_returns_a_token_that_authenticates(world, client):
    response = client.post(
        "/api/v1/auth/token",
        {"username": "the-member", "password": "pw-123456", "name": "laptop"},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "laptop" and body["token"].startswith("berth_")
    me = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert me.json() == {
        "username": "the-member",
        "email": "the-member@example.test",
        "is_superuser": False,
        "teams": [{"name": "acme", "role": "member"}],
    }


def test_sign_in_with_a_wrong_password_is_400(world, client):
    response = client.post(
        "/api/v1/auth/token", {"username": "the-member", "password": "nope"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "wrong username or password" in response.json()["detail"]


def test_a_revoked_token_is_401(world, token_client):
    client = token_client(world.users["member"])
    token = ApiToken.objects.filter(user=world.users["member"]).latest("created_at")
    assert client.delete(f"/api/v1/tokens/{token.pk}").status_code == 204
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_garbage_bearer_token_is_401(db, client):
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer berth_nothing")
    assert response.status_code == 401


def test_token_list_never_shows_the_token(world, owner):
    tokens = owner.get("/api/v1/tokens").json()
    assert tokens and set(tokens[0]) == {"id", "name", "created_at", "last_used_at", "expires_at"}


def test_session_authentication_works_too(world, client):
    client.force_login(world.users["viewer"])
    assert client.get("/api/v1/apps").status_code == 200


def test_apps_list_shape(world, owner):
    assert owner.get("/api/v1/apps").json() == [
        {
            "name": "demo",
            "team": "acme",
            "url": "http://demo.localhost",
            "created_at": owner.get("/api/v1/apps/demo").json()["created_at"],
            "current_release": 1,
            "parent": None,  # a preview app names the app it previews a branch of
        }
    ]


def test_apps_list_pages_follow_the_link_header_and_search_by_name(world, owner):
    for name in ("shop-a", "shop-b", "shop-c", "blog"):
        assert owner.post("/api/v1/apps", {"name": name, "team": "acme"}, format="json").status_code == 201
    everything = [app["name"] for app in owner.get("/api/v1/apps").json()]  # no limit: every app, as before
    assert everything == ["blog", "demo", "shop-a", "shop-b", "shop-c"]

    seen, url = [], "/api/v1/apps?limit=2"
    while url:
        response = owner.get(url)
        assert response.status_code == 200 and len(response.json()) <= 2
        seen += [app["name"] for app in response.json()]
        link = response.headers.get("Link")
        url = link[link.index("/api/") : link.index(">")] if link else None
        assert link is None or link.endswith('>; rel="next"')
    assert seen == everything

    first = owner.get("/api/v1/apps?q=SHOP&limit=2")
    assert [app["name"] for app in first.json()] == ["shop-a", "shop-b"]
    assert "q=SHOP" in first.headers["Link"] and "after=shop-b" in first.headers["Link"]
    assert [app["name"] for app in owner.get("/api/v1/apps?q=shop&limit=2&after=shop-b").json()] == ["shop-c"]
    assert "Link" not in owner.get("/api/v1/apps?q=shop&limit=3").headers  # nothing follows

    for bad in ("0", "1001", "ten", "-1"):
        response = owner.get(f"/api/v1/apps?limit={bad}")
        assert response.status_code == 400
        assert response.json()["detail"] == "limit: must be a whole number from 1 to 1000"


def test_app_url_carries_the_router_port_when_not_80(world, owner, settings):
    settings.BERTH_HTTP_PORT = 8080
    settings.BERTH_APPS_DOMAIN = "apps.example.net"
    assert owner.get("/api/v1/apps/demo").json()["url"] == "http://demo.apps.example.net:8080"


def test_app_detail_shape(world, owner):
    body = owner.get("/api/v1/apps/demo").json()
    assert body["domains"] == ["www.example.org"]
    assert body["formation"] == [
        {"process": "web", "replicas": 1, "memory_mb": None, "cpu": None, "constraints": []}
    ]
    assert (body["deploy_branch"], body["health_check_path"], body["buildpack"]) == ("main", "/", "")
    assert body["current_release"] == 1


def test_apps_of_other_teams_are_invisible(world):
    outsider = world.client("outsider")
    assert outsider.get("/api/v1/apps").json() == []
    response = outsider.get("/api/v1/apps/demo")
    assert response.status_code == 404
    assert response.json() == {"detail": "app 'demo' not found"}


def test_create_app_in_the_only_team(world, token_client, make_user, make_team):
    user = make_user()
    make_team("solo", owner=user)
    response = token_client(user).post("/api/v1/apps", {"name": "mine"}, format="json")
    assert response.status_code == 201
    assert response.json()["team"] == "solo"


def test_create_app_without_team_when_in_several_is_400(world, owner, make_team):
    make_team("second", owner=world.users["owner"])
    response = owner.post("/api/v1/apps", {"name": "mine"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("team:")


@pytest.mark.parametrize(
    "name",
    [
        "api",
        "admin",
        "www",
        "healthz",
        "registry",
        "router",
        "Demo",
        "1app",
        "a",
        "app-",
        "my_app",
        "a" * 31,
        "",
        7,
    ],
)
def test_invalid_or_reserved_app_names_are_400_naming_the_field(world, owner, name):
    response = owner.post("/api/v1/apps", {"name": name, "team": "acme"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("name:")
    assert not App.objects.filter(name=str(name)).exists()


def test_duplicate_app_name_is_409_even_across_teams(world):
    response = world.client("outsider").post("/api/v1/apps", {"name": "demo", "team": "other"}, format="json")
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_malformed_json_is_400(world, owner):
    response = owner.generic(
        "PATCH", "/api/v1/apps/demo/config", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_json_array_where_an_object_is_expected_is_400(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", ["FOO"], format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body:")


def test_app_patch_changes_settings(world, owner):
    response = owner.patch(
        "/api/v1/apps/demo",
        {"deploy_branch": "release/2", "health_check_path": "/up", "buildpack": "python"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["deploy_branch"] == "release/2"
    assert App.objects.get(name="demo").health_check_path == "/up"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"deploy_branch": "-x"}, "deploy_branch"),
        ({"deploy_branch": "a..b"}, "deploy_branch"),
        ({"health_check_path": "up"}, "health_check_path"),
        ({"health_check_path": "/a b"}, "health_check_path"),
        ({"buildpack": "Py thon"}, "buildpack"),
        ({"name": "renamed"}, "name"),
    ],
)
def test_app_patch_rejects_bad_values_naming_the_field(world, owner, body, field):
    response = owner.patch("/api/v1/apps/demo", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}:")


def test_config_set_and_unset_makes_releases(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"FOO": "1", "BAR": "two"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"BAR": "two", "FOO": "1"}
    response = owner.patch("/api/v1/apps/demo/config", {"FOO": None}, format="json")
    assert response.json() == {"BAR": "two"}
    releases = owner.get("/api/v1/apps/demo/releases").json()
    assert [r["version"] for r in releases] == [3, 2, 1]
    assert releases[1]["description"] == "Set BAR, FOO config vars"
    assert releases[1]["config_keys"] == ["BAR", "FOO"]
    assert releases[0]["description"] == "Unset FOO"
    assert releases[0]["config_keys"] == ["BAR"]
    # the new release reuses the image and procfile of the one before
    assert releases[0]["image"] == "demo:v1" and releases[0]["procfile"] == {"web": "python app.py"}
    assert releases[0]["created_by"] == "the-owner"


def test_unsetting_a_missing_key_makes_no_release(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"NOPE": None}, format="json")
    assert response.status_code == 200
    assert Release.objects.filter(app=world.app).count() == 1


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "É", "A" * 256])
def test_bad_config_keys_are_400_and_nothing_is_written(world, owner, key):
    response = owner.patch("/api/v1/apps/demo/config", {"GOOD": "x", key: "v"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("config:")
    assert not ConfigVar.objects.filter(app=world.app).exists()
    assert Release.objects.filter(app=world.app).count() == 1


def test_config_value_of_exactly_32_kib_is_accepted(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"BIG": "x" * 32768}, format="json")
    assert response.status_code == 200


def test_oversized_config_value_is_400(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"BIG": "x" * 32769}, format="json")
    assert response.status_code == 400
    assert "BIG" in response.json()["detail"] and "32768 bytes" in response.json()["detail"]


def test_non_string_config_value_is_400(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"N": 5}, format="json")
    assert response.status_code == 400


def test_viewers_cannot_read_config(world):
    response = world.client("viewer").get("/api/v1/apps/demo/config")
    assert response.status_code == 403
    assert "needs the member role" in response.json()["detail"]


def test_formation_scale(world, owner):
    response = owner.patch(
        "/api/v1/apps/demo/formation",
        [{"process": "web", "replicas": 3, "memory_mb": 512, "cpu": 0.5}],
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == [
        {"process": "web", "replicas": 3, "memory_mb": 512, "cpu": 0.5, "constraints": []}
    ]
    Formation.objects.filter(app=world.app, process="web").update(constraints=["node.labels.zone==a"])
    response = owner.patch(
        "/api/v1/apps/demo/formation", [{"process": "web", "memory_mb": None}], format="json"
    )
    # placement (set by ps:place) shows as people type it
    assert response.json() == [
        {"process": "web", "replicas": 3, "memory_mb": None, "cpu": 0.5, "constraints": ["zone=a"]}
    ]


def test_unknown_process_type_is_400(world, owner):
    response = owner.patch(
        "/api/v1/apps/demo/formation", [{"process": "worker", "replicas": 1}], format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("process:")
    assert "worker" in response.json()["detail"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"process": "web", "replicas": 101}, "replicas"),
        ({"process": "web", "replicas": -1}, "replicas"),
        ({"process": "web", "replicas": "3"}, "replicas"),
        ({"process": "web", "replicas": True}, "replicas"),
        ({"process": "web", "memory_mb": 16}, "memory_mb"),
        ({"process": "web", "memory_mb": 70000}, "memory_mb"),
        ({"process": "web", "cpu": 0}, "cpu"),
        ({"process": "web", "cpu": 65}, "cpu"),
        ({"process": "web", "cpu": 0.001}, "cpu"),
        ({"process": "Web!", "replicas": 1}, "process"),
        ({"process": "web", "color": "red"}, "color"),
    ],
)
def test_bad_formation_values_are_400_and_nothing_changes(world, owner, entry, field):
    response = owner.patch(
        "/api/v1/apps/demo/formation", [{"process": "web", "replicas": 5}, entry], format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}:")
    assert Formation.objects.get(app=world.app, process="web").replicas == 1


def test_domains(world, owner):
    response = owner.post("/api/v1/apps/demo/domains", {"hostname": "Shop.Example.COM."}, format="json")
    assert response.status_code == 201
    assert response.json()["hostname"] == "shop.example.com"
    hostnames = [d["hostname"] for d in owner.get("/api/v1/apps/demo/domains").json()]
    assert hostnames == ["shop.example.com", "www.example.org"]
    assert owner.delete("/api/v1/apps/demo/domains/shop.example.com").status_code == 204
    assert owner.delete("/api/v1/apps/demo/domains/shop.example.com").status_code == 404


def test_duplicate_domain_is_409(world, owner):
    response = owner.post("/api/v1/apps/demo/domains", {"hostname": "www.example.org"}, format="json")
    assert response.status_code == 409


@pytest.mark.parametrize(
    "hostname", ["localhost", "x.localhost", "-a.example.com", "a..b", "1.2.3.4", "a_b.com", "ex ample.com"]
)
def test_invalid_domains_are_400(world, owner, hostname):
    response = owner.post("/api/v1/apps/demo/domains", {"hostname": hostname}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("hostname:")


def test_release_detail_and_missing_version(world, owner):
    body = owner.get("/api/v1/apps/demo/releases/1").json()
    assert set(body) == {
        "version",
        "image",
        "description",
        "status",
        "created_by",
        "created_at",
        "config_keys",
        "procfile",
    }
    assert owner.get("/api/v1/apps/demo/releases/9").status_code == 404


def test_app_destroy_removes_everything(world):
    response = world.client("admin").delete("/api/v1/apps/demo")
    assert response.status_code == 204
    assert not App.objects.filter(name="demo").exists()
    assert not Release.objects.filter(app_id=world.app.pk).exists()


def test_team_create_and_duplicate(world, owner):
    response = owner.post("/api/v1/teams", {"name": "beta"}, format="json")
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert owner.post("/api/v1/teams", {"name": "beta"}, format="json").status_code == 409
    assert owner.post("/api/v1/teams", {"name": "Bad Name"}, format="json").status_code == 400
    teams = owner.get("/api/v1/teams").json()
    assert [(t["name"], t["role"]) for t in teams] == [("acme", "owner"), ("beta", "owner")]


def test_member_add_duplicate_is_409(world):
    response = world.client("admin").post(
        "/api/v1/teams/acme/members", {"username": "the-viewer", "role": "member"}, format="json"
    )
    assert response.status_code == 409


def test_member_add_by_email(world):
    response = world.client("admin").post(
        "/api/v1/teams/acme/members", {"email": "newcomer@example.test", "role": "viewer"}, format="json"
    )
    assert response.status_code == 201
    assert response.json() == {"username": "newcomer", "email": "newcomer@example.test", "role": "viewer"}


def test_member_add_unknown_user_is_400(world):
    response = world.client("admin").post(
        "/api/v1/teams/acme/members", {"username": "ghost", "role": "viewer"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("username:")


def test_bad_role_is_400(world):
    response = world.client("admin").patch(
        "/api/v1/teams/acme/members/the-member", {"role": "god"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("role:")


def test_the_last_owner_cannot_be_demoted_or_removed(world, owner):
    response = owner.patch("/api/v1/teams/acme/members/the-owner", {"role": "admin"}, format="json")
    assert response.status_code == 409
    assert "last owner" in response.json()["detail"]
    assert owner.delete("/api/v1/teams/acme/members/the-owner").status_code == 409


def test_an_owner_can_step_down_once_another_owner_exists(world, owner):
    assert (
        owner.patch("/api/v1/teams/acme/members/the-admin", {"role": "owner"}, format="json").status_code
        == 200
    )
    assert (
        owner.patch("/api/v1/teams/acme/members/the-owner", {"role": "member"}, format="json").status_code
        == 200
    )


def test_an_admin_cannot_make_an_owner(world):
    response = world.client("admin").patch(
        "/api/v1/teams/acme/members/the-member", {"role": "owner"}, format="json"
    )
    assert response.status_code == 403
    assert "only an owner" in response.json()["detail"]


def test_invitation_round_trip(world, token_client, make_user):
    admin = world.client("admin")
    response = admin.post(
        "/api/v1/teams/acme/invitations", {"email": "new@example.test", "role": "member"}, format="json"
    )
    assert response.status_code == 201
    invitation = response.json()
    assert set(invitation) >= {"id", "email", "role", "token", "expires_at"}
    # the link that joins (the dashboard's /join/), not e-mailed on a server without BERTH_SMTP_URL
    assert invitation["url"] == f"http://testserver/join/{invitation['token']}/"
    assert invitation["emailed"] is False
    listed = admin.get("/api/v1/teams/acme/invitations").json()
    assert all("token" not in i for i in listed)
    joiner = token_client(make_user("joiner", email="new@example.test"))  # the invited address
    response = joiner.post("/api/v1/invitations/accept", {"token": invitation["token"]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"team": "acme", "role": "member"}
    assert joiner.get("/api/v1/apps").json()[0]["name"] == "demo"
    again = joiner.post("/api/v1/invitations/accept", {"token": invitation["token"]}, format="json")
    assert again.status_code == 409


def test_a_revoked_invitation_cannot_be_accepted(world, token_client, make_user):
    admin = world.client("admin")
    assert admin.delete(f"/api/v1/teams/acme/invitations/{world.invitation.pk}").status_code == 204
    response = token_client(make_user()).post(
        "/api/v1/invitations/accept", {"token": world.invitation_token}, format="json"
    )
    assert response.status_code == 404


def test_an_expired_invitation_is_409(world, token_client, make_user):
    from django.utils import timezone

    type(world.invitation).objects.filter(pk=world.invitation.pk).update(expires_at=timezone.now())
    response = token_client(make_user(email=world.invitation.email)).post(
        "/api/v1/invitations/accept", {"token": world.invitation_token}, format="json"
    )
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]


def test_audit_log_records_actor_action_and_address_but_no_config_values(world, owner):
    owner.patch(
        "/api/v1/apps/demo/config", {"SECRET_TOKEN": "s3cr3t-value"}, format="json", REMOTE_ADDR="127.0.0.9"
    )
    events = world.client("admin").get("/api/v1/teams/acme/audit").json()
    newest = events[0]
    assert newest["action"] == "release.create"
    config_event = next(e for e in events if e["action"] == "config.update")
    assert config_event["actor"] == "the-owner"
    assert config_event["remote_addr"] == "127.0.0.9"
    assert config_event["data"] == {"set": ["SECRET_TOKEN"], "unset": [], "added": ["SECRET_TOKEN"]}
    assert "s3cr3t-value" not in str(list(AuditEvent.objects.values_list("data", "target")))


def test_schema_lists_the_api_routes(world, client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/apps/{app}/config" in response.content
    assert client.get("/api/v1/docs/").status_code == 200


@pytest.mark.urls("tests.api.urls_with_extra_route")
def test_a_route_without_a_permission_rule_is_refused(world, owner):
    response = owner.get("/api/v1/forgotten")
    assert response.status_code == 403
    assert response.json() == {"detail": "this route has no permission rule"}

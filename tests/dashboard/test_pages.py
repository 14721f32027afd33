"""Every dashboard page and POST through Django's test client: who sees what, role checks on every write,
service errors shown as messages, and nothing half-applied."""

import html
import re

import pytest
from berth.accounts.models import ApiToken, Invitation, Membership
from berth.apps.models import App, ConfigVar, Domain, Formation
from berth.builds.models import Build
from berth.releases.models import Release
from django.contrib.messages import get_messages

PAGES = [
    "/apps/",
    "/apps/status.json",
    "/apps/new",
    "/apps/demo/",
    "/teams/acme/",
    "/teams/new",
    "/invitations/accept",
    "/nodes/",
]


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def field_error(response, error_id: str) -> str:
    """The error a refused form shows beside its field (the page again, HTTP 400)."""
    assert response.status_code == 400, response.status_code
    match = re.search(rf'id="{error_id}"[^>]*>([^<]*)<', response.content.decode())
    assert match, f"no #{error_id} on the page"
    return html.unescape(match.group(1))


def formation(app) -> dict:
    return {f.process: (f.replicas, f.memory_mb, f.cpu) for f in Formation.objects.filter(app=app)}


# --- log in, frame, team switcher --------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES + ["/", "/apps/demo/builds/1/"])
def test_pages_need_a_login(client_as, url):
    response = client_as("anonymous").get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_login_page_logs_in_and_lands_on_the_apps_list(client, world):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "the-member", "password": "pw-123456"})
    assert response.status_code == 302 and response["Location"] == "/apps/"
    assert "demo" in client.get("/apps/").content.decode()


def test_login_with_a_wrong_password_says_so(client, world):
    response = client.post("/login/", {"username": "the-member", "password": "nope"})
    assert response.status_code == 200
    assert 'id="login-error"' in response.content.decode()


def test_logout_is_a_post(client_as):
    client = client_as("member")
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/apps/").status_code == 302


# the nodes page is the platform admins' (test_nodes_page_is_for_platform_admins), not a team owner's
@pytest.mark.parametrize("url", [page for page in PAGES if page != "/nodes/"])
def test_every_page_renders_for_an_owner(client_as, url):
    assert client_as("owner").get(url).status_code == 200


def test_home_redirects_to_apps(client_as):
    assert client_as("viewer").get("/")["Location"] == "/apps/"


def test_apps_list_shows_the_current_teams_apps_with_release_and_state(client_as, world):
    body = client_as("viewer").get("/apps/").content.decode()
    assert 'data-app="demo"' in body
    assert "v2" in body  # the newest release when none is live
    status = client_as("viewer").get("/apps/status.json").json()
    assert status["apps"][0]["name"] == "demo"
    assert status["apps"][0]["current_release"] == 2
    assert status["apps"][0]["state"] == Release.objects.get(app=world.app, version=2).status


def test_outsider_sees_only_their_team(client_as):
    client = client_as("outsider")
    assert 'data-app="demo"' not in client.get("/apps/").content.decode()
    assert client.get("/apps/status.json").json() == {"apps": []}


def test_team_switcher_keeps_the_choice_in_the_session(client_as, world):
    from berth.accounts.services import membership_add
    from berth.apps.services import app_create

    app_create(team=world.other, name="elsewhere", actor=world.users["outsider"])
    membership_add(team=world.other, user=world.users["member"], role="viewer", actor=world.users["outsider"])
    client = client_as("member")
    assert 'data-app="demo"' in client.get("/apps/").content.decode()  # acme comes first
    response = client.post("/teams/switch", {"team": "other", "next": "/apps/"})
    assert response["Location"] == "/apps/"
    body = client.get("/apps/").content.decode()
    assert 'data-app="elsewhere"' in body and 'data-app="demo"' not in body
    assert 'id="new-app"' not in body  # a viewer in "other"


def test_team_switcher_refuses_a_team_you_are_not_in(client_as):
    assert client_as("member").post("/teams/switch", {"team": "other"}).status_code == 404


def test_team_switcher_ignores_an_offsite_next(client_as):
    response = client_as("member").post("/teams/switch", {"team": "acme", "next": "https://evil.example/"})
    assert response["Location"] == "/apps/"


# --- creating apps -------------------------------------------------------------------------------------------


def test_member_creates_an_app(client_as):
    response = client_as("member").post(
        "/apps/new", {"name": "fresh", "team": "acme", "deploy_branch": "main"}
    )
    assert response.status_code == 302 and response["Location"] == "/apps/fresh/"
    assert App.objects.get(name="fresh").team.name == "acme"


def test_invalid_app_name_is_a_message_not_an_app(client_as):
    response = client_as("member").post("/apps/new", {"name": "Bad Name", "team": "acme"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "must be 2-30 characters" in body and 'value="Bad Name"' in body
    assert not App.objects.filter(name="Bad Name").exists()


def test_duplicate_app_name_is_a_message(client_as):
    response = client_as("member").post("/apps/new", {"name": "demo", "team": "acme"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert App.objects.filter(name="demo").count() == 1


def test_viewer_has_no_create_form_and_a_forged_post_is_403(client_as):
    client = client_as("viewer")
    assert 'id="app-new-form"' not in client.get("/apps/new").content.decode()
    assert 'id="new-app"' not in client.get("/apps/").content.decode()
    assert client.post("/apps/new", {"name": "sneaky", "team": "acme"}).status_code == 403
    assert not App.objects.filter(name="sneaky").exists()


def test_creating_an_app_in_a_team_you_are_not_in_is_404(client_as):
    assert client_as("member").post("/apps/new", {"name": "sneaky", "team": "other"}).status_code == 404
    assert not App.objects.filter(name="sneaky").exists()


# --- the app page: who sees what ----------------------------------------------------------------------------

EDIT_CONTROLS = [
    'id="formation-form"',
    'id="config-table"',
    'id="config-add"',
    'data-action="rollback"',
    'id="deploy-form"',
    'id="domain-add"',
    'id="settings-form"',
    'data-action="remove-domain"',
]


def test_viewer_sees_the_app_without_edit_controls(client_as, world):
    from berth.apps.services import domain_add

    domain_add(app=world.app, hostname="www.example.org", actor=world.users["owner"])
    body = client_as("viewer").get("/apps/demo/").content.decode()
    assert 'data-release="1"' in body and 'data-release="2"' in body
    assert 'id="formation-readonly"' in body and "www.example.org" in body
    for control in EDIT_CONTROLS + ['id="destroy-form"']:
        assert control not in body, control
    assert 'id="config-hidden"' in body
    assert "data-config-key" not in body and "s3cr3t-value" not in body


def test_member_sees_edit_controls_but_not_delete(client_as, world):
    from berth.apps.services import domain_add

    domain_add(app=world.app, hostname="www.example.org", actor=world.users["owner"])
    body = client_as("member").get("/apps/demo/").content.decode()
    for control in EDIT_CONTROLS:
        assert control in body, control
    assert 'id="destroy-form"' not in body


def test_admin_sees_delete(client_as):
    assert 'id="destroy-form"' in client_as("admin").get("/apps/demo/").content.decode()


def test_outsider_gets_404_for_the_app_and_its_posts(client_as, world):
    client = client_as("outsider")
    assert client.get("/apps/demo/").status_code == 404
    assert client.post("/apps/demo/config/set", {"key": "A", "value": "b"}).status_code == 404
    assert not ConfigVar.objects.filter(app=world.app, key="A").exists()


def test_the_app_page_lists_processes_or_says_why_not(client_as):
    # Real Docker: nothing runs for "demo", so the table is empty (or the section says Docker is unreachable).
    body = client_as("viewer").get("/apps/demo/").content.decode()
    assert 'id="no-processes"' in body or 'id="processes-error"' in body


# --- config -----------------------------------------------------------------------------------------------------


def test_config_values_are_masked_until_revealed(client_as):
    client = client_as("member")
    body = client.get("/apps/demo/").content.decode()
    assert 'data-config-key="SECRET_TOKEN"' in body
    assert "s3cr3t-value" not in body
    revealed = client.get("/apps/demo/?reveal=SECRET_TOKEN").content.decode()
    assert "s3cr3t-value" in revealed
    assert client.get("/apps/demo/config/value", {"key": "SECRET_TOKEN"}).json() == {
        "key": "SECRET_TOKEN",
        "value": "s3cr3t-value",
    }


def test_config_value_json_is_for_members_only(client_as):
    assert client_as("viewer").get("/apps/demo/config/value", {"key": "SECRET_TOKEN"}).status_code == 403
    assert client_as("member").get("/apps/demo/config/value", {"key": "NOPE"}).status_code == 404


def test_setting_a_config_var_makes_a_release(client_as, world):
    response = client_as("member").post("/apps/demo/config/set", {"key": "COLOR", "value": "blue\r\nsky"})
    assert response.status_code == 302 and response["Location"] == "/apps/demo/#config"
    assert ConfigVar.objects.get(app=world.app, key="COLOR").value == "blue\nsky"
    assert Release.objects.filter(app=world.app).count() == 3
    assert "Set COLOR; made release v3." in messages_of(response)


def test_an_invalid_config_key_is_a_message_and_no_release(client_as, world):
    response = client_as("member").post(
        "/apps/demo/config/set", {"form": "config_add", "key": "1BAD", "value": "x"}
    )
    assert response.status_code == 400  # the page again, the error beside the key, what was typed kept
    assert re.search(r'id="config-key-error"[^>]*>invalid key', response.content.decode())
    assert 'value="1BAD"' in response.content.decode()
    assert Release.objects.filter(app=world.app).count() == 2


def test_unsetting_a_config_var(client_as, world):
    client = client_as("member")
    response = client.post("/apps/demo/config/unset", {"key": "SECRET_TOKEN"})
    assert "Unset SECRET_TOKEN; made release v3." in messages_of(response)
    assert not ConfigVar.objects.filter(app=world.app, key="SECRET_TOKEN").exists()
    again = client.post("/apps/demo/config/unset", {"key": "SECRET_TOKEN"})
    assert "SECRET_TOKEN was not set; nothing changed." in messages_of(again)
    assert Release.objects.filter(app=world.app).count() == 3


def test_viewer_cannot_change_config(client_as, world):
    client = client_as("viewer")
    assert client.post("/apps/demo/config/set", {"key": "X", "value": "y"}).status_code == 403
    assert client.post("/apps/demo/config/unset", {"key": "SECRET_TOKEN"}).status_code == 403
    assert set(ConfigVar.objects.filter(app=world.app).values_list("key", flat=True)) == {"SECRET_TOKEN"}


def test_config_is_never_reachable_by_get_writes(client_as):
    assert client_as("member").get("/apps/demo/config/set").status_code == 405


# --- formation ----------------------------------------------------------------------------------------------


def test_scaling_changes_the_formation(client_as, world):
    response = client_as("member").post(
        "/apps/demo/formation",
        {
            "replicas-web": "3",
            "memory_mb-web": "256",
            "cpu-web": "0.5",
            "replicas-worker": "2",
            "memory_mb-worker": "",
            "cpu-worker": "",
        },
    )
    assert response["Location"] == "/apps/demo/#processes"
    rows = formation(world.app)
    assert rows["web"][:2] == (3, 256) and str(rows["web"][2]) == "0.50"
    assert rows["worker"] == (2, None, None)


def test_one_bad_row_changes_nothing(client_as, world):
    before = formation(world.app)
    response = client_as("member").post(
        "/apps/demo/formation", {"replicas-web": "4", "replicas-worker": "many"}
    )
    assert field_error(response, "replicas-worker-error") == "'many' is not a whole number"
    assert 'value="many"' in response.content.decode() and 'value="4"' in response.content.decode()
    response = client_as("member").post(
        "/apps/demo/formation", {"replicas-web": "4", "replicas-worker": "101"}
    )
    assert "from 0 to 100" in field_error(response, "replicas-worker-error")
    assert formation(world.app) == before


def test_scaling_an_unknown_process_type_is_a_message(client_as, world):
    response = client_as("member").post("/apps/demo/formation", {"replicas-clock": "1"})
    assert "unknown process type" in field_error(response, "formation-error")
    assert "clock" not in formation(world.app)


def test_viewer_cannot_scale(client_as, world):
    before = formation(world.app)
    assert client_as("viewer").post("/apps/demo/formation", {"replicas-web": "5"}).status_code == 403
    assert formation(world.app) == before


# --- domains -----------------------------------------------------------------------------------------------------


def test_adding_and_removing_a_domain(client_as, world):
    client = client_as("member")
    response = client.post("/apps/demo/domains/add", {"hostname": "WWW.Example.org."})
    assert "Added www.example.org." in messages_of(response)
    assert 'data-domain="www.example.org"' in client.get("/apps/demo/").content.decode()
    response = client.post("/apps/demo/domains/remove", {"hostname": "www.example.org"})
    assert "Removed www.example.org." in messages_of(response)
    assert not Domain.objects.filter(app=world.app).exists()


def test_bad_and_taken_domains_are_messages(client_as, world):
    from berth.apps.services import app_create, domain_add

    other_app = app_create(team=world.team, name="second", actor=world.users["owner"])
    domain_add(app=other_app, hostname="taken.example.org", actor=world.users["owner"])
    client = client_as("member")
    bad = client.post("/apps/demo/domains/add", {"hostname": "nope"})
    assert "not a valid DNS name" in field_error(bad, "domain-hostname-error")
    assert 'value="nope"' in bad.content.decode()
    taken = client.post("/apps/demo/domains/add", {"hostname": "taken.example.org"})
    assert "already in use" in field_error(taken, "domain-hostname-error")
    assert any(
        "is not a domain of demo" in m
        for m in messages_of(client.post("/apps/demo/domains/remove", {"hostname": "taken.example.org"}))
    )
    assert not Domain.objects.filter(app=world.app).exists()
    assert Domain.objects.filter(app=other_app).count() == 1


def test_viewer_cannot_touch_domains(client_as, world):
    from berth.apps.services import domain_add

    domain_add(app=world.app, hostname="www.example.org", actor=world.users["owner"])
    client = client_as("viewer")
    assert client.post("/apps/demo/domains/add", {"hostname": "x.example.org"}).status_code == 403
    assert client.post("/apps/demo/domains/remove", {"hostname": "www.example.org"}).status_code == 403
    assert list(Domain.objects.filter(app=world.app).values_list("hostname", flat=True)) == [
        "www.example.org"
    ]


# --- releases: rollback --------------------------------------------------------------------------------------------


def test_rollback_makes_a_new_release(client_as, world):
    response = client_as("member").post("/apps/demo/rollback", {"version": "1"})
    assert response["Location"] == "/apps/demo/#releases"
    assert "Rolling back to v1: made release v3." in messages_of(response)
    release = Release.objects.get(app=world.app, version=3)
    assert release.description == "Rollback to v1" and release.image == "demo:v1"
    assert release.config == {}  # v1's config: before SECRET_TOKEN was set


def test_rollback_errors_are_messages(client_as, world):
    from berth.releases.services import release_create

    release_create(app=world.app, image="", procfile={}, description="no image", actor=None)
    client = client_as("member")
    assert "has no release v9" in field_error(
        client.post("/apps/demo/rollback", {"version": "9"}), "rollback-error"
    )
    assert "no image" in field_error(client.post("/apps/demo/rollback", {"version": "3"}), "rollback-error")
    assert "Choose a release to roll back to." == field_error(
        client.post("/apps/demo/rollback", {"version": "x"}), "rollback-error"
    )
    assert Release.objects.filter(app=world.app).count() == 3


def test_viewer_cannot_roll_back(client_as, world):
    assert client_as("viewer").post("/apps/demo/rollback", {"version": "1"}).status_code == 403
    assert Release.objects.filter(app=world.app).count() == 2


# --- deploys and builds -------------------------------------------------------------------------------------


def test_deploying_an_image_redirects_to_its_build_page(client_as, world):
    client = client_as("member")
    response = client.post("/apps/demo/deploy", {"image": "registry.example:5000/demo:v2"})
    build = Build.objects.get(app=world.app)
    assert response["Location"] == f"/apps/demo/builds/{build.pk}/"
    assert build.source == "image" and build.image_ref == "registry.example:5000/demo:v2"
    page = client.get(response["Location"]).content.decode()
    assert (
        'id="build-log"' in page
        and f'data-ws="/ws/builds/{build.pk}"' in page
        and 'data-finished="0"' in page
    )
    assert 'id="build-cancel-form"' in page
    # one build at a time: the second is a message
    again = client.post("/apps/demo/deploy", {"image": "registry.example:5000/demo:v3"})
    assert "still queued" in field_error(again, "deploy-image-error")
    assert Build.objects.filter(app=world.app).count() == 1


def test_a_bad_image_reference_is_a_message(client_as, world):
    response = client_as("member").post("/apps/demo/deploy", {"image": "Not An Image!"})
    assert "Not a valid image reference" in field_error(response, "deploy-image-error")
    assert 'value="Not An Image!"' in response.content.decode()
    assert not Build.objects.exists()


def test_viewer_cannot_deploy(client_as):
    assert client_as("viewer").post("/apps/demo/deploy", {"image": "demo:v2"}).status_code == 403
    assert not Build.objects.exists()


def test_a_finished_build_shows_its_stored_log(client_as, world):
    build = Build.objects.create(
        app=world.app,
        source="image",
        image_ref="demo:v1",
        status="failed",
        log="-----> Pulling demo:v1\nerror: nope",
    )
    client = client_as("viewer")
    body = client.get(f"/apps/demo/builds/{build.pk}/").content.decode()
    assert "error: nope" in body and 'data-finished="1"' in body
    assert 'id="build-cancel-form"' not in body
    assert client.get("/apps/demo/builds/999999/").status_code == 404
    assert client_as("outsider").get(f"/apps/demo/builds/{build.pk}/").status_code == 404


def test_cancelling_a_queued_build(client_as, world):
    build = Build.objects.create(app=world.app, source="image", image_ref="demo:v1")
    assert client_as("viewer").post(f"/apps/demo/builds/{build.pk}/cancel").status_code == 403
    client = client_as("member")
    response = client.post(f"/apps/demo/builds/{build.pk}/cancel")
    assert response["Location"] == f"/apps/demo/builds/{build.pk}/"
    build.refresh_from_db()
    assert build.status == "cancelled"
    again = client.post(f"/apps/demo/builds/{build.pk}/cancel")
    assert any("already cancelled" in m for m in messages_of(again))


# --- settings and deletion -------------------------------------------------------------------------------------


def test_member_changes_settings(client_as, world):
    response = client_as("member").post(
        "/apps/demo/settings", {"deploy_branch": "prod", "health_check_path": "/up", "buildpack": ""}
    )
    assert "Settings saved." in messages_of(response)
    world.app.refresh_from_db()
    assert (world.app.deploy_branch, world.app.health_check_path) == ("prod", "/up")


def test_bad_settings_change_nothing(client_as, world):
    response = client_as("member").post(
        "/apps/demo/settings", {"deploy_branch": "prod", "health_check_path": "up"}
    )
    assert "must be a URL path" in field_error(response, "set-health-error")
    assert 'value="prod"' in response.content.decode()  # what was typed, not what is saved
    world.app.refresh_from_db()
    assert world.app.deploy_branch == "main"
    assert client_as("viewer").post("/apps/demo/settings", {"deploy_branch": "x"}).status_code == 403


def test_only_admins_delete_and_they_must_type_the_name(client_as, world):
    assert client_as("member").post("/apps/demo/destroy", {"confirm": "demo"}).status_code == 403
    client = client_as("admin")
    response = client.post("/apps/demo/destroy", {"confirm": "dem"})
    assert "type the app's name (demo)" in field_error(response, "destroy-confirm-error")
    assert App.objects.filter(name="demo").exists()
    response = client.post("/apps/demo/destroy", {"confirm": "demo"})
    assert response["Location"] == "/apps/"
    assert not App.objects.filter(name="demo").exists()


# --- team admin panel ------------------------------------------------------------------------------------------

TEAM_ADMIN_CONTROLS = ['id="member-add"', 'id="invitations"', 'id="audit"', 'class="inline role-form"']


def test_viewer_sees_members_but_no_admin_controls(client_as):
    body = client_as("viewer").get("/teams/acme/").content.decode()
    assert 'data-member="the-owner"' in body and 'data-member="the-viewer"' in body
    for control in TEAM_ADMIN_CONTROLS:
        assert control not in body, control
    assert 'id="token-add"' in body  # everyone manages their own tokens


def test_admin_sees_the_panel_with_audit(client_as):
    body = client_as("admin").get("/teams/acme/").content.decode()
    for control in TEAM_ADMIN_CONTROLS:
        assert control in body, control
    assert "membership.add" in body and "app.create" in body
    # an admin may not grant the owner role, so it is not offered (except on the owner's own row)
    assert re.search(r'id="member-role".*?</select>', body, re.S).group(0).count('value="owner"') == 0


def test_outsider_gets_404_for_the_team(client_as):
    assert client_as("outsider").get("/teams/acme/").status_code == 404


def test_admin_adds_a_member_by_username_or_email(client_as, world):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="newbie", email="newbie@example.test", password="x")
    client = client_as("admin")
    response = client.post("/teams/acme/members/add", {"user": "newbie@example.test", "role": "member"})
    assert response["Location"] == "/teams/acme/#members"
    assert Membership.objects.get(team=world.team, user__username="newbie").role == "member"
    again = client.post("/teams/acme/members/add", {"user": "newbie", "role": "viewer"})
    assert again.status_code == 400 and "already a member" in again.content.decode()
    missing = client.post("/teams/acme/members/add", {"user": "ghost", "role": "viewer"})
    assert missing.status_code == 400 and "no user &#x27;ghost&#x27;" in missing.content.decode()


def test_member_changes_are_admin_only(client_as, world):
    client = client_as("member")
    assert (
        client.post("/teams/acme/members/add", {"user": "the-outsider", "role": "member"}).status_code == 403
    )
    assert client.post("/teams/acme/members/the-viewer/role", {"role": "admin"}).status_code == 403
    assert client.post("/teams/acme/members/the-viewer/remove").status_code == 403
    assert Membership.objects.get(team=world.team, user__username="the-viewer").role == "viewer"
    assert not Membership.objects.filter(team=world.team, user__username="the-outsider").exists()


def test_changing_a_role_and_removing_a_member(client_as, world):
    client = client_as("admin")
    response = client.post("/teams/acme/members/the-viewer/role", {"role": "member"})
    assert "the-viewer is now member." in messages_of(response)
    assert Membership.objects.get(team=world.team, user__username="the-viewer").role == "member"
    response = client.post("/teams/acme/members/the-viewer/remove")
    assert "Removed the-viewer from acme." in messages_of(response)
    assert not Membership.objects.filter(team=world.team, user__username="the-viewer").exists()
    assert client.post("/teams/acme/members/nobody/remove").status_code == 404


def test_role_guards_are_messages(client_as, world):
    admin = client_as("admin")
    response = admin.post("/teams/acme/members/the-member/role", {"role": "owner"})
    assert "Only an owner" in field_error(response, "member-error")
    response = admin.post("/teams/acme/members/the-member/role", {"role": "emperor"})
    assert "must be one of" in field_error(response, "member-error")
    owner = client_as("owner")
    response = owner.post("/teams/acme/members/the-owner/role", {"role": "admin"})
    assert "last owner" in field_error(response, "member-error")
    # shown in the row of the member it is about
    assert re.search(
        r'data-member="the-owner"(?:(?!data-member).)*id="member-error"', response.content.decode(), re.S
    )
    assert Membership.objects.get(team=world.team, user__username="the-owner").role == "owner"
    assert Membership.objects.get(team=world.team, user__username="the-member").role == "member"


def test_invitation_token_is_shown_once(client_as, world):
    client = client_as("admin")
    response = client.post("/teams/acme/invitations/new", {"email": "friend@example.test", "role": "viewer"})
    assert response["Location"] == "/teams/acme/#invitations"
    page = client.get("/teams/acme/").content.decode()
    link = re.search(r'id="invitation-link"[^>]*>([^<]+)<', page).group(1)
    assert link.startswith("http://testserver/join/")
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert 'data-invitation="' in page and "friend@example.test" in page
    assert token not in client.get("/teams/acme/").content.decode()  # only once
    from berth.accounts.models import hash_secret

    assert Invitation.objects.get(email="friend@example.test").token_hash == hash_secret(token)


def test_invitation_errors_and_revoke(client_as, world):
    client = client_as("admin")
    response = client.post("/teams/acme/invitations/new", {"email": "not-an-email", "role": "viewer"})
    assert response.status_code == 400 and "is not a valid email" in response.content.decode()
    assert not Invitation.objects.exists()
    client.post("/teams/acme/invitations/new", {"email": "friend@example.test", "role": "viewer"})
    invitation = Invitation.objects.get()
    assert client_as("member").post(f"/teams/acme/invitations/{invitation.pk}/revoke").status_code == 403
    response = client_as("admin").post(f"/teams/acme/invitations/{invitation.pk}/revoke")
    assert "Revoked the invitation of friend@example.test." in messages_of(response)
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert client_as("admin").post(f"/teams/acme/invitations/{invitation.pk}/revoke").status_code == 404


def test_accepting_an_invitation_joins_the_team(client_as, world):
    from berth.accounts.services import invitation_create

    _, token = invitation_create(
        team=world.team, email="Outsider@example.test", role="member", actor=world.users["owner"]
    )
    client = client_as("outsider")  # the invited address, in another case: addresses match case-insensitively
    bad = client.post("/invitations/accept", {"token": "nope"})
    assert "does not exist" in field_error(bad, "invitation-token-error")
    response = client.post("/invitations/accept", {"token": f"http://testserver/join/{token}/"})  # the link
    assert response["Location"] == "/teams/acme/"
    assert Membership.objects.get(team=world.team, user__username="the-outsider").role == "member"
    again = client.post("/invitations/accept", {"token": token})
    assert "already accepted" in field_error(again, "invitation-accept-error")


def test_creating_a_team(client_as):
    client = client_as("viewer")
    response = client.post("/teams/new", {"name": "skunkworks"})
    assert response["Location"] == "/teams/skunkworks/"
    assert Membership.objects.get(team__name="skunkworks").role == "owner"
    assert 'id="new-app"' in client.get("/apps/").content.decode()  # the new team is now the current one
    bad = client.post("/teams/new", {"name": "acme"})
    assert bad.status_code == 400 and "already exists" in bad.content.decode()


# --- tokens -----------------------------------------------------------------------------------------------------


def test_token_is_shown_once_and_can_be_revoked(client_as, world):
    client = client_as("viewer")
    response = client.post("/tokens/new", {"name": "laptop", "next": "/teams/acme/#tokens"})
    assert response["Location"] == "/teams/acme/#tokens"
    page = client.get("/teams/acme/").content.decode()
    clear = re.search(r'id="shown-once-secret"[^>]*>([^<]+)<', page).group(1)
    assert clear.startswith("berth_")
    token = ApiToken.objects.get(user=world.users["viewer"], name="laptop")
    assert f'data-token="{token.pk}"' in page
    assert clear not in client.get("/teams/acme/").content.decode()
    # someone else's token is not yours to revoke
    assert client_as("member").post(f"/tokens/{token.pk}/revoke").status_code == 404
    response = client_as("viewer").post(f"/tokens/{token.pk}/revoke", {"next": "/teams/acme/#tokens"})
    assert "Revoked token 'laptop'." in messages_of(response)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_nameless_token_is_a_message(client_as):
    response = client_as("viewer").post("/tokens/new", {"name": "  "})
    assert any("1-100 characters" in m for m in messages_of(response))
    assert not ApiToken.objects.exists()


# --- nodes --------------------------------------------------------------------------------------------------------


def test_nodes_page_is_for_platform_admins(client, client_as, world):
    # one rule with the API and the sockets (berth.nodes.selectors.can_see_nodes): a team admin is a tenant
    for role in ("member", "admin", "owner"):
        assert client_as(role).get("/nodes/").status_code == 403
        assert 'id="nav-nodes"' not in client_as(role).get("/apps/").content.decode()
    world.users["owner"].is_superuser = True
    world.users["owner"].save()
    body = client_as("owner").get("/nodes/").content.decode()
    assert 'data-ws="/ws/nodes"' in body and 'id="nodes-empty"' in body
    assert 'id="nav-nodes"' in client_as("owner").get("/apps/").content.decode()


def test_a_403_page_names_the_role_needed(client_as):
    body = client_as("viewer").post("/apps/demo/formation", {"replicas-web": "2"}).content.decode()
    assert "needs the member role" in body


def test_static_assets_are_served(client_as):
    for path in ("/static/berth/berth.css", "/static/berth/berth.js", "/static/berth/app.js"):
        response = client_as("anonymous").get(path)
        assert response.status_code == 200, path


def test_a_form_without_its_csrf_token_is_refused_with_a_readable_page(world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["member"])
    response = client.post("/apps/demo/config/set", {"key": "A", "value": "b"})
    assert response.status_code == 403
    assert 'id="csrf-failure"' in response.content.decode()
    assert not ConfigVar.objects.filter(app=world.app, key="A").exists()


def test_the_error_page_renders_without_a_request():
    from django.template.loader import render_to_string

    assert "Something broke" in render_to_string("500.html")

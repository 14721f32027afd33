"""Platform administrators manage accounts through the API (berth.api.users), and a user in no team gets a
personal team with their first app (berth.accounts.services.personal_team_ensure), as on Heroku."""

import pytest
from berth.accounts.models import Membership, Team
from berth.apps.models import App
from berth.audit.models import AuditEvent
from django.contrib.auth import get_user_model


@pytest.fixture
def admin(make_user):
    return make_user("root-admin", is_superuser=True, is_staff=True)


def test_an_admin_creates_an_account_whose_link_sets_the_password_and_signs_in(admin, token_client, client):
    api = token_client(admin)
    answer = api.post("/api/v1/users", {"username": "grace", "email": "grace@example.test"}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["username"], body["email"], body["is_active"], body["teams"]) == (
        "grace",
        "grace@example.test",
        True,
        [],
    )
    grace = get_user_model().objects.get(username="grace")
    assert not grace.has_usable_password()
    # the link is the dashboard's: it leads to the form that sets a password, and the new one signs in
    path = body["password_reset_url"].split("://", 1)[1].split("/", 1)[1]
    form = client.get(f"/{path}", follow=True)
    assert form.status_code == 200 and b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else f"/{path}",
        {"new_password1": "a-long-new-passphrase", "new_password2": "a-long-new-passphrase"},
    )
    assert done.status_code == 302
    signed_in = client.post(
        "/api/v1/auth/token",
        {"username": "grace", "password": "a-long-new-passphrase", "name": "laptop"},
        content_type="application/json",
    )
    assert signed_in.status_code == 201
    assert AuditEvent.objects.filter(action="user.create", target="grace", actor=admin).exists()


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"username": "grace"}, 400, "email: is required"),
        ({"username": "grace", "email": "not-an-address"}, 400, "email: is not a valid e-mail address"),
        ({"username": "bad name!", "email": "x@example.test"}, 400, "username: "),
        ({"username": "grace", "email": "g@example.test", "is_superuser": True}, 400, "is_superuser"),
        (
            {"username": "root-admin", "email": "new@example.test"},
            409,
            "a user named 'root-admin' already exists",
        ),
        ({"username": "other", "email": "ROOT-ADMIN@example.test"}, 409, "e-mail address"),
    ],
)
def test_a_bad_new_account_is_refused_with_its_reason_and_nothing_made(
    admin, token_client, body, status, detail
):
    before = get_user_model().objects.count()
    answer = token_client(admin).post("/api/v1/users", body, format="json")
    assert answer.status_code == status, answer.json()
    assert detail in answer.json()["detail"]
    assert get_user_model().objects.count() == before


def test_a_disabled_account_loses_its_tokens_at_once_and_can_be_enabled_again(admin, make_user, token_client):
    grace = make_user("grace")
    graces_api = token_client(grace)
    assert graces_api.get("/api/v1/me").status_code == 200
    api = token_client(admin)
    answer = api.patch("/api/v1/users/grace", {"is_active": False}, format="json")
    assert answer.status_code == 200 and answer.json()["is_active"] is False
    assert graces_api.get("/api/v1/me").status_code == 401
    assert api.post("/api/v1/users/grace/password-reset-link", {}, format="json").status_code == 400
    assert api.patch("/api/v1/users/grace", {"is_active": True}, format="json").status_code == 200
    assert graces_api.get("/api/v1/me").status_code == 200
    assert [e.action for e in AuditEvent.objects.filter(target="grace").order_by("pk")] == [
        "user.disable",
        "user.enable",
    ]
    # an admin cannot lock themselves out, and a body that says anything else is refused
    assert api.patch("/api/v1/users/root-admin", {"is_active": False}, format="json").status_code == 409
    assert api.patch("/api/v1/users/grace", {"is_active": "no"}, format="json").status_code == 400
    assert api.patch("/api/v1/users/grace", {"is_superuser": True}, format="json").status_code == 400
    assert api.patch("/api/v1/users/nobody", {"is_active": False}, format="json").status_code == 404


def test_the_list_shows_teams_and_searches_and_a_team_admin_is_not_a_platform_admin(
    world, admin, token_client
):
    rows = token_client(admin).get("/api/v1/users?search=the-").json()
    by_name = {row["username"]: row for row in rows}
    assert set(by_name) == {"the-owner", "the-admin", "the-member", "the-viewer", "the-outsider"}
    assert by_name["the-owner"]["teams"] == ["acme"]
    assert token_client(admin).get("/api/v1/users?search=" + "x" * 101).status_code == 400
    # the owner of a team manages their team's members, never the platform's accounts
    assert world.client("owner").get("/api/v1/users").status_code == 403
    link = world.client("owner").post("/api/v1/users/the-viewer/password-reset-link", {}, format="json")
    assert link.status_code == 403


def test_a_user_in_no_team_gets_a_personal_team_with_their_first_app(make_user, token_client):
    grace = make_user("Grace.Hopper")
    api = token_client(grace)
    first = api.post("/api/v1/apps", {"name": "compiler"}, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["team"] == "grace-hopper"
    assert Membership.objects.get(user=grace, team__name="grace-hopper").role == "owner"
    # the next app goes to the same team: it is now their only one
    assert api.post("/api/v1/apps", {"name": "cobol"}, format="json").json()["team"] == "grace-hopper"
    assert AuditEvent.objects.filter(action="team.create", target="grace-hopper", actor=grace).count() == 1


def test_a_refused_first_app_leaves_no_personal_team_and_a_taken_team_name_gets_a_number(
    make_user, make_team, make_app, token_client
):
    make_team("grace")  # someone else's
    make_app("taken")
    grace = make_user("grace")
    api = token_client(grace)
    for body, status in (
        ({"name": "Bad Name"}, 400),
        ({"name": "taken"}, 409),
        ({"name": "ok", "deploy_branch": "no spaces"}, 400),
    ):
        assert api.post("/api/v1/apps", body, format="json").status_code == status
    assert not Team.objects.filter(memberships__user=grace).exists()
    answer = api.post("/api/v1/apps", {"name": "fine"}, format="json")
    assert answer.status_code == 201 and answer.json()["team"] == "grace-2"
    assert App.objects.get(name="fine").team.name == "grace-2"

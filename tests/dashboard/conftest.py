"""A team with a user in each role, an outsider, and an app with two releases, for the dashboard's tests."""

from types import SimpleNamespace

import pytest

PASSWORD = "pw-123456"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 would make each user (and each browser log-in) cost ~100 ms.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def build_world():
    """Team acme (owner, admin, member, viewer), team other (outsider), app demo with v1 and v2 and formation."""
    from berth.accounts.services import membership_add, team_create
    from berth.apps.services import app_create, config_update
    from berth.releases.services import release_create
    from django.contrib.auth import get_user_model

    users = {
        role: get_user_model().objects.create_user(
            username=f"the-{role}", email=f"{role}@example.test", password=PASSWORD
        )
        for role in ("owner", "admin", "member", "viewer", "outsider")
    }
    team = team_create(name="acme", actor=users["owner"])
    for role in ("admin", "member", "viewer"):
        membership_add(team=team, user=users[role], role=role, actor=users["owner"])
    other = team_create(name="other", actor=users["outsider"])
    app = app_create(team=team, name="demo", actor=users["owner"])
    release_create(
        app=app,
        image="demo:v1",
        procfile={"web": "python app.py", "worker": "python worker.py"},
        description="Deploy abc1234",
        actor=users["owner"],
        status="built",
    )
    config_update(app=app, changes={"SECRET_TOKEN": "s3cr3t-value"}, actor=users["owner"])
    return SimpleNamespace(users=users, team=team, other=other, app=app)


@pytest.fixture
def world(db):
    return build_world()


@pytest.fixture
def client_as(client, world):
    """The test client logged in as the user of a role ("anonymous": nobody)."""

    def login(role: str):
        client.logout()
        if role != "anonymous":
            client.force_login(world.users[role])
        return client

    return login

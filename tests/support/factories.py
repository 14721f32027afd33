"""Factories for the control plane's objects, shared by every test folder (registered by tests/conftest.py):
users, teams with members in each role, apps, API clients with real tokens, and `world`, one of each."""

import itertools
from types import SimpleNamespace

import pytest
from berth.accounts.services import invitation_create, membership_add, team_create, token_create
from berth.apps.services import app_create, domain_add
from berth.releases.services import release_create
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from rest_framework.test import APIClient

_counter = itertools.count(1)


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 at 1,000 rounds: the same algorithm name, so a platform process with the production
    hashers checks these hashes (at the rounds each names)."""

    iterations = 1000


def user_create(username: str | None = None, **extra):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(
        username=username,
        email=extra.pop("email", f"{username}@example.test"),
        password="pw-123456",
        **extra,
    )


@pytest.fixture
def make_user(db):
    return user_create


@pytest.fixture
def make_team(make_user):
    def make(name: str | None = None, owner=None):
        return team_create(name=name or f"team{next(_counter)}", actor=owner or make_user())

    return make


@pytest.fixture
def make_app(make_team):
    def make(name: str | None = None, team=None, actor=None):
        team = team or make_team()
        return app_create(team=team, name=name or f"app{next(_counter)}", actor=actor)

    return make


def api_client(user=None) -> APIClient:
    """An APIClient that authenticates as `user` with a real API token (None = anonymous)."""
    client = APIClient()
    if user is not None:
        _, clear = token_create(user=user, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
    return client


@pytest.fixture
def token_client(db):
    """An APIClient that authenticates as `user` with a real API token (None = anonymous)."""
    return api_client


def world_create() -> SimpleNamespace:
    """One team with a user in each role, an outsider in another team, an app with a release, a domain."""
    users = {role: user_create(f"the-{role}") for role in ("owner", "admin", "member", "viewer", "outsider")}
    team = team_create(name="acme", actor=users["owner"])
    for role in ("admin", "member", "viewer"):
        membership_add(team=team, user=users[role], role=role, actor=users["owner"])
    team_create(name="other", actor=users["outsider"])
    newcomer = user_create("newcomer")
    app = app_create(team=team, name="demo", actor=users["owner"])
    release = release_create(
        app=app, image="demo:v1", procfile={"web": "python app.py"}, description="first", actor=users["owner"]
    )
    domain_add(app=app, hostname="www.example.org", actor=users["owner"])
    invitation, invitation_token = invitation_create(
        team=team, email="someone@example.test", role="viewer", actor=users["owner"]
    )
    return SimpleNamespace(
        users=users,
        team=team,
        app=app,
        release=release,
        newcomer=newcomer,
        invitation=invitation,
        invitation_token=invitation_token,
        client=lambda role: api_client(users.get(role)),
    )


@pytest.fixture
def world(db):
    """world_create's: one of each, made for the test."""
    return world_create()

"""Fixtures shared by every test folder: ports and waiting, a real HAProxy router, and the factories for users,
teams with members in each role, apps and API clients with real tokens."""

import itertools
import os
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def router(tmp_path, settings):
    """A real HAProxy router on a free loopback port, in its own folder; stopped by PID afterwards."""
    from berth.routing.haproxy import haproxy_command, write_config

    directory = tmp_path / "router"
    settings.BERTH_ROUTER_DIR = directory
    settings.BERTH_ROUTER_ADMIN_SOCKET = directory / "admin.sock"
    port = free_port()
    paths = write_config(http_port=port)
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: settings.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket")
        yield SimpleNamespace(paths=paths, port=port, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def manage(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh interpreter (settings are read at start-up, so each env gets its own)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


@pytest.fixture(autouse=True)
def _fresh_sign_in_counts(settings):
    """Failed sign-ins are counted in Redis across processes (berth.accounts.throttles); a test starts with none
    left by an earlier one (the suite runs twice on one Redis database). Not FLUSHDB: Celery's queues live there."""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
        keys = list(client.scan_iter(match="*throttle:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test that stopped Redis on purpose; the next one finds it back


_counter = itertools.count(1)


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str | None = None, **extra):
        username = username or f"user{next(_counter)}"
        return get_user_model().objects.create_user(
            username=username,
            email=extra.pop("email", f"{username}@example.test"),
            password="pw-123456",
            **extra,
        )

    return make


@pytest.fixture
def make_team(make_user):
    from berth.accounts.services import team_create

    def make(name: str | None = None, owner=None):
        return team_create(name=name or f"team{next(_counter)}", actor=owner or make_user())

    return make


@pytest.fixture
def make_app(make_team):
    from berth.apps.services import app_create

    def make(name: str | None = None, team=None, actor=None):
        team = team or make_team()
        return app_create(team=team, name=name or f"app{next(_counter)}", actor=actor)

    return make


@pytest.fixture
def token_client(db):
    """An APIClient that authenticates as `user` with a real API token (None = anonymous)."""
    from berth.accounts.services import token_create

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            _, clear = token_create(user=user, name="tests")
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
        return client

    return make


@pytest.fixture
def world(make_user, make_team, make_app, token_client):
    """One team with a user in each role, an outsider in another team, an app with a release, a domain."""
    from berth.accounts.services import invitation_create, membership_add
    from berth.apps.services import domain_add
    from berth.releases.services import release_create

    users = {role: make_user(f"the-{role}") for role in ("owner", "admin", "member", "viewer", "outsider")}
    team = make_team("acme", owner=users["owner"])
    for role in ("admin", "member", "viewer"):
        membership_add(team=team, user=users[role], role=role, actor=users["owner"])
    make_team("other", owner=users["outsider"])
    newcomer = make_user("newcomer")
    app = make_app("demo", team=team, actor=users["owner"])
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
        client=lambda role: token_client(users.get(role)),
    )


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 would make each factory user cost ~100 ms; the matrix creates hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""Fault: the database goes away under a running web process. /healthz and the API answer 503 with a clear
message (no 500, no hang), and once the database is back everything works again with nothing lost."""

import os
import subprocess

import httpx
import pytest

from tests.conftest import REPO_DIR, free_port, manage, wait_for
from tests.e2e.faults_support import OwnPostgres

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(300)]

SETUP = """
from berth.accounts.services import team_create, token_create
from berth.apps.services import app_create
from django.contrib.auth import get_user_model
user = get_user_model().objects.create_user(username="dev", email="dev@example.test", password="pw-123456")
team = team_create(name="devs", actor=user)
app_create(team=team, name="t-e2e-dbfault", actor=user)
print(token_create(user=user, name="db")[1])
"""


@pytest.fixture
def database():
    server = OwnPostgres()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def web(database, router, tmp_path, settings):
    env = {
        "DATABASE_URL": database.url,
        "BERTH_HOME": str(tmp_path / "home"),
        "BERTH_ROUTER_DIR": str(router.paths.directory),
        "BERTH_ROUTER_ADMIN_SOCKET": str(settings.BERTH_ROUTER_ADMIN_SOCKET),
        "BERTH_HTTP_PORT": str(router.port),
    }
    (tmp_path / "home").mkdir()
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    created = manage("shell", "-c", SETUP, env=env)
    assert created.returncode == 0, created.stderr[-2000:]
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        [
            str(REPO_DIR / ".venv/bin/gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
        ],
        cwd=REPO_DIR,
        env={**os.environ, **env, "PYTHONPATH": str(REPO_DIR / "platform")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )

    def up():
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=30, message="the web process")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_without_its_database_the_platform_answers_503_clearly_and_recovers_with_nothing_lost(database, web):
    assert [a["name"] for a in web.get("/api/v1/apps").json()] == ["t-e2e-dbfault"]

    database.stop()

    health = web.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["checks"]["database"].startswith("error:"), body
    assert body["checks"]["redis"] == "ok" and body["checks"]["router"] == "ok", body
    for method, path, payload in [
        ("GET", "/api/v1/apps", None),
        ("GET", "/api/v1/me", None),
        ("POST", "/api/v1/apps", {"name": "t-e2e-while-down", "team": "devs"}),
        ("PATCH", "/api/v1/apps/t-e2e-dbfault/config", {"KEY": "value"}),
    ]:
        answer = web.request(method, path, json=payload)
        assert answer.status_code == 503, (method, path, answer.status_code, answer.text[:300])
        assert answer.json() == {"detail": "the database is unavailable; try again shortly"}

    database.start()

    def back():
        return web.get("/healthz").status_code == 200 and web.get("/api/v1/apps").status_code == 200

    wait_for(back, timeout=30, interval=0.5, message="the platform to use its database again")
    # every web worker reconnects (each request may land on either one)
    assert all(web.get("/api/v1/apps").status_code == 200 for _ in range(10))
    # nothing was half-written while it was down, and writes work again
    assert [a["name"] for a in web.get("/api/v1/apps").json()] == ["t-e2e-dbfault"]
    assert web.get("/api/v1/apps/t-e2e-dbfault/config").json() == {}
    assert web.post("/api/v1/apps", json={"name": "t-e2e-after", "team": "devs"}).status_code == 201

"""Fixtures shared by every test folder: ports and waiting, a real HAProxy router, the sample apps
(tests/fixtures/apps), and, from tests/support/factories.py, the factories for users, teams with members in each
role, apps and API clients with real tokens.

Kept light (no Django import at the top): the benchmarks in bench/ import free_port and wait_for from here."""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_DIR = Path(__file__).resolve().parent.parent
# the sample apps: one per buildpack (detection and builds) and `hello`, the end-to-end tests' stdlib web app
FIXTURE_APPS = REPO_DIR / "tests" / "fixtures" / "apps"

pytest_plugins = ["tests.support.factories"]


# Fixtures that need the real Docker engine in swarm mode: the whole platform of the end-to-end suites (its web
# and worker deploy to Swarm), the multi-node cluster, and the Swarm services of tests/observe. A test using one
# is marked `docker` here, so `pytest -m "not docker"` (the fast tier) never needs Docker even when a test forgets
# the mark.
DOCKER_FIXTURES = frozenset({"berth_platform", "tenant", "cluster", "run_service"})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


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


def hello_app(message: str, *, mode: str = "", loud: bool = False) -> str:
    """The source of tests/fixtures/apps/hello/app.py answering `message`, in `mode` ("" serves; "crash",
    "latecrash", "fail", "noport": see the app), printing a line per request when `loud`."""
    source = (FIXTURE_APPS / "hello" / "app.py").read_text()
    for name, value in (("MESSAGE", message), ("MODE", mode), ("LOUD", loud)):
        source, count = re.subn(
            rf"^{name} = .*$", lambda _, n=name, v=value: f"{n} = {v!r}", source, flags=re.M
        )
        assert count == 1, f"hello/app.py has no single {name} line"
    return source


def write_hello_app(path: Path, message: str, *, mode: str = "", loud: bool = False) -> None:
    """Write the hello app into the working tree `path` (app.py and an empty requirements.txt: the python
    buildpack, no dependencies to fetch)."""
    (path / "requirements.txt").write_text("")
    (path / "app.py").write_text(hello_app(message, mode=mode, loud=loud))


@pytest.fixture
def sample_app(tmp_path):
    """A private copy of one of tests/fixtures/apps (by name), for a test that changes it."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(FIXTURE_APPS / name, tmp_path / "sample-apps" / name))

    return copy


@pytest.fixture
def router(tmp_path, settings):
    """A real HAProxy router on free loopback ports (HTTP `port`, HTTPS `https_port`), in its own folder; stopped
    by PID afterwards."""
    from berth.routing.haproxy import haproxy_command, write_config

    directory = tmp_path / "router"
    settings.BERTH_ROUTER_DIR = directory
    settings.BERTH_ROUTER_ADMIN_SOCKET = directory / "admin.sock"
    port, https_port = free_port(), free_port()
    settings.BERTH_HTTPS_PORT = https_port
    paths = write_config(http_port=port, https_port=https_port)
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: settings.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket")
        yield SimpleNamespace(paths=paths, port=port, https_port=https_port, process=process)
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


@pytest.fixture(autouse=True)
def _fast_passwords(request, settings):
    # PBKDF2 would make each factory user cost ~100 ms; the matrix creates hundreds. Not with a running platform:
    # its web process keeps the production hashers and could not check a password hashed with MD5.
    if "berth_platform" in request.fixturenames:
        return
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

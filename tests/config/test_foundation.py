"""Foundation: layout, settings from the environment, health, the first admin, Celery for long work."""

import importlib
import json
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings as django_settings

from tests.conftest import NO_TLS, REPO_DIR, free_port, manage, wait_for
from tests.support.processes import web_command


def test_stdlib_platform_module_is_not_shadowed():
    import platform

    assert platform.python_version().startswith("3.11")
    assert not (REPO_DIR / "platform" / "__init__.py").exists()


def test_layout_has_the_fixed_top_level():
    for name in [
        "manage.py",
        "pyproject.toml",
        "platform/berth",
        "buildpacks",
        "templates",
        "static",
        "tests",
        "deploy",
    ]:
        assert (REPO_DIR / name).exists(), name


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must start with one of"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must start with one of"),
        ("BERTH_HTTP_PORT", "eighty", "BERTH_HTTP_PORT must be an integer"),
        ("BERTH_WEB_PORT", "70000", "BERTH_WEB_PORT must be between 1 and 65535"),
        ("BERTH_DEBUG", "maybe", "BERTH_DEBUG must be true or false"),
    ],
)
def test_a_wrong_setting_stops_start_up_naming_it(tmp_path, name, value, message):
    result = manage("check", env={"BERTH_HOME": str(tmp_path), name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_an_unwritable_berth_home_stops_start_up(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = manage("check", env={"BERTH_HOME": str(blocker / "home")})
    assert result.returncode != 0
    assert "BERTH_HOME" in result.stderr


def test_secret_key_is_generated_once_into_berth_home(tmp_path):
    env = {"BERTH_HOME": str(tmp_path), "BERTH_SECRET_KEY": ""}
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = manage("shell", "--no-imports", "-c", code, env=env, check=True).stdout.strip()
    second = manage("shell", "--no-imports", "-c", code, env=env, check=True).stdout.strip()
    key_file = tmp_path / "secret_key"
    assert first == second == key_file.read_text()
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_defaults_are_sqlite_in_berth_home_and_localhost_apps(tmp_path):
    env = {"BERTH_HOME": str(tmp_path), "DATABASE_URL": "", "BERTH_APPS_DOMAIN": "", "BERTH_HTTP_PORT": ""}
    code = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.DATABASES['default']['NAME'], s.BERTH_APPS_DOMAIN, s.BERTH_HTTP_PORT, s.REDIS_URL]))"
    )
    env["REDIS_URL"] = ""
    name, domain, port, redis_url = json.loads(
        manage("shell", "--no-imports", "-c", code, env=env, check=True).stdout
    )
    assert name == str(tmp_path / "berth.sqlite3")
    assert (domain, port, redis_url) == ("localhost", 80, "redis://127.0.0.1:6379/0")


def test_postgres_database_url_is_understood(tmp_path):
    env = {"BERTH_HOME": str(tmp_path), "DATABASE_URL": "postgres://u:p@db.example:5433/berth"}
    code = "from django.conf import settings as s; d = s.DATABASES['default']; print(d['ENGINE'], d['HOST'], d['PORT'])"
    out = manage("shell", "--no-imports", "-c", code, env=env, check=True).stdout.split()
    assert out == ["django.db.backends.postgresql", "db.example", "5433"]


def test_setting_can_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-a-file\n")
    env = {"BERTH_HOME": str(tmp_path), "BERTH_SECRET_KEY": "", "BERTH_SECRET_KEY_FILE": str(secret)}
    out = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        env=env,
        check=True,
    )
    assert out.stdout.strip() == "from-a-file"


@pytest.mark.django_db
@pytest.mark.docker
def test_healthz_is_ok_when_every_dependency_answers(client, router):
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {k: "ok" for k in ["database", "redis", "docker", "swarm", "router"]}


@pytest.mark.django_db
def test_healthz_is_503_naming_what_is_down(client, settings, tmp_path):
    settings.BERTH_ROUTER_ADMIN_SOCKET = tmp_path / "no-router.sock"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["router"].startswith("error:")
    assert checks["redis"].startswith("error:")


@pytest.mark.django_db
def test_healthz_is_503_when_docker_is_unreachable(client, settings, tmp_path):
    settings.DOCKER_HOST = f"unix://{tmp_path}/no-docker.sock"
    body = client.get("/healthz").json()
    assert body["status"] == "error"
    assert body["checks"]["docker"].startswith("error:")
    assert body["checks"]["swarm"].startswith("error:")


@pytest.mark.docker
def test_doctor_prints_each_check_and_fails_when_one_is_down(tmp_path):
    env = {
        "BERTH_HOME": str(tmp_path),
        "DATABASE_URL": "",
        "BERTH_ROUTER_ADMIN_SOCKET": str(tmp_path / "none.sock"),
    }
    manage("migrate", "-v0", env=env, check=True)
    result = manage("doctor", env=env)
    assert result.returncode != 0
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["database"].strip() == "ok"
    assert lines["docker"].strip() == "ok"
    assert lines["swarm"].strip() == "ok"
    assert "error" in lines["router"]


def test_first_admin_is_created_once_with_a_printed_password(tmp_path):
    env = {
        "BERTH_HOME": str(tmp_path),
        "DATABASE_URL": "",
        "BERTH_ADMIN_USER": "root",
        "BERTH_ADMIN_PASSWORD": "",
    }
    manage("migrate", "-v0", env=env, check=True)
    first = manage("ensure_admin", env=env, check=True).stdout
    assert "created admin user 'root'" in first
    password = first.rsplit(": ", 1)[1].strip()
    check = (
        "from django.contrib.auth import authenticate; "
        f"print(authenticate(username='root', password={password!r}) is not None)"
    )
    assert manage("shell", "--no-imports", "-c", check, env=env, check=True).stdout.strip() == "True"
    second = manage("ensure_admin", env=env, check=True).stdout
    assert "already exists" in second


def test_celery_is_configured_for_long_work():
    from berth.config.celery import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > django_settings.BERTH_BUILD_TIMEOUT
    assert conf.task_time_limit and conf.task_soft_time_limit
    assert "sweep-stuck-work" in conf.beat_schedule


def test_sweep_calls_every_registered_sweeper():
    from berth.core import sweep

    calls = []
    sweeper = sweep.register_sweeper(lambda: calls.append(1) or 2)
    try:
        assert sweep.sweep_stuck_work() >= 2
        assert calls == [1]
    finally:
        sweep._SWEEPERS.remove(sweeper)


def test_a_failing_sweeper_does_not_stop_the_others():
    from berth.core import sweep

    def broken():
        raise RuntimeError("boom")

    good = sweep.register_sweeper(lambda: 1)
    bad = sweep.register_sweeper(broken)
    try:
        assert sweep.sweep_stuck_work() >= 1
    finally:
        sweep._SWEEPERS.remove(good)
        sweep._SWEEPERS.remove(bad)


@pytest.mark.docker
def test_web_process_serves_http_through_gunicorn_with_the_uvicorn_worker(tmp_path):
    port = free_port()
    env = {**os.environ, "BERTH_HOME": str(tmp_path), "DATABASE_URL": "", "BERTH_WEB_PORT": str(port)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_DIR, env=env, check=True)
    process = subprocess.Popen(
        web_command(port),
        cwd=REPO_DIR,
        env={**env, "PYTHONPATH": str(REPO_DIR / "platform")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answered():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5, verify=NO_TLS)
            except httpx.TransportError:
                return None

        response = wait_for(answered, timeout=30, message="gunicorn to answer")
        body = response.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["docker"] == "ok"
        assert "router" in body["checks"]
        schema = httpx.get(f"http://127.0.0.1:{port}/api/v1/schema/", timeout=5)
        assert schema.status_code in (200, 401, 403)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_settings_module_reloads_cleanly():
    # settings must be importable more than once (gunicorn workers, celery) without side effects failing
    import berth.config.settings as module

    importlib.reload(module)
    assert module.DATA_UPLOAD_MAX_MEMORY_SIZE is None
    time.sleep(0)


@pytest.mark.django_db
def test_a_path_no_api_route_matches_is_a_json_404(client):
    response = client.get("/api/v1/tokens/-1")
    assert response.status_code == 404
    assert response.json() == {"detail": "not found"}
    assert client.get("/no-such-page").headers["Content-Type"].startswith("text/html")

"""A real web process (gunicorn + uvicorn worker, as deploy/Procfile runs it) on a throwaway BERTH_HOME with SQLite,
and the log shipper as a process of its own; used by the CLI tests and bench/log_latency.py. Stopped by PID."""

import json
import os
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import httpx

from tests.conftest import REPO_DIR, free_port, wait_for

SETUP = """
import json
from django.contrib.auth import get_user_model
from berth.accounts.services import team_create, token_create
from berth.apps.services import app_create
users = {}
for name, team in (("ada", "acme"), ("eve", "other")):
    user = get_user_model().objects.create_user(name, f"{name}@example.test", "pw-123456")
    users[name] = (user, team_create(name=team, actor=user))
for app in APPS:
    app_create(team=users["ada"][1], name=app, actor=users["ada"][0])
print(json.dumps({name: token_create(user=user, name="t")[1] for name, (user, _) in users.items()}))
"""


def web_env(home: Path, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BERTH_HOME": str(home),
        "BERTH_SECRET_KEY": "observe-test",
        "DATABASE_URL": "",  # SQLite in the throwaway home: no shared database is touched
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "berth.config.settings",
        "PYTHONPATH": f"{REPO_DIR / 'platform'}:{REPO_DIR}",
    }


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_web(home: Path, *, redis_url: str, apps: list[str], workers: int = 1) -> SimpleNamespace:
    """Migrate a fresh SQLite database, create ada (team acme, owning `apps`) and eve (team other) with tokens,
    and start gunicorn on a free loopback port. Call .stop() at the end."""
    env = web_env(home, redis_url)
    python = str(REPO_DIR / ".venv/bin/python")
    manage = str(REPO_DIR / "manage.py")
    subprocess.run(
        [python, manage, "migrate", "-v", "0"], env=env, check=True, timeout=300, capture_output=True
    )
    setup = subprocess.run(
        [python, manage, "shell", "-c", f"APPS = {apps!r}\n{SETUP}"],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    tokens = json.loads(setup.stdout.strip().splitlines()[-1])
    port = free_port()
    log = (home / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [
            str(REPO_DIR / ".venv/bin/gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "0",  # as deploy/Procfile: a busy event loop must not get its worker killed by the heartbeat check
        ],
        cwd=REPO_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answered():
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code in (200, 503)
        except httpx.TransportError:
            return False

    try:
        wait_for(answered, timeout=60, message="gunicorn to answer")
    except AssertionError:
        stop(process)
        raise

    def stop_all():
        stop(process)
        log.close()

    return SimpleNamespace(url=url, tokens=tokens, process=process, home=home, stop=stop_all, env=env)


def start_shipper(env: dict[str, str], log_path: Path, *extra: str) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), "ship_logs", *extra],
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

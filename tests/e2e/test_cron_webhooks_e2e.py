"""Scheduled jobs and outbound webhooks through the whole running platform (web, worker, watcher, and Celery beat
started here): a push tells the team's webhook receiver on 127.0.0.1 (signed; its first answer 500, retried), and
a job on `* * * * *` runs in the live release with its output in `berth logs` and its exit status in `berth cron`."""

import hashlib
import hmac
import json
import os
import subprocess
import time

import httpx
import pytest

from tests.conftest import REPO_DIR, wait_for
from tests.e2e.conftest import _start
from tests.e2e.test_push_to_live import commit_and_push
from tests.hooks.receiver import Receiver

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture
def platform_env() -> dict:
    # the receiver listens on 127.0.0.1; retries 1 s, 3 s… apart instead of 10 s, 30 s…
    return {"BERTH_WEBHOOKS_ALLOW_PRIVATE": "1", "BERTH_WEBHOOKS_RETRY_SECONDS": "1"}


@pytest.fixture
def beat(berth_platform):
    """Celery beat, the clock of scheduled jobs (not among the platform's default test processes); stopped by PID."""
    command = [
        str(REPO_DIR / ".venv/bin/celery"),
        "-A",
        "berth.config.beat",  # as deploy/Procfile runs it: Berth's Celery settings without Django's apps
        "beat",
        "-s",
        str(berth_platform.home / "celerybeat-schedule"),
        "-l",
        "INFO",
    ]
    process = _start("beat", command, berth_platform.env, berth_platform.logs)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def berth_cli(berth_platform, tenant, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "BERTH_URL": berth_platform.web_url,
        "BERTH_TOKEN": tenant.token,
        "HOME": str(berth_platform.home),
    }
    return subprocess.run(
        [str(REPO_DIR / ".venv/bin/berth"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def verified(secret: str, request: dict) -> bool:
    fields = dict(part.split("=", 1) for part in request["headers"]["Berth-Signature"].split(","))
    digest = hmac.new(
        secret.encode(), f"{fields['t']}.".encode() + request["body"], hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(digest, fields["v1"])


def test_a_push_notifies_the_webhook_and_a_cron_job_logs_every_minute(repo, tenant, berth_platform, beat):
    app = tenant.app.name
    api = httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    with Receiver([500, 200]) as receiver:
        added = api.post(
            f"/teams/{tenant.team.name}/webhooks",
            json={"url": receiver.url, "events": ["deploy.started", "deploy.live"]},
        )
        assert added.status_code == 201, added.text
        secret, webhook_id = added.json()["secret"], added.json()["id"]

        pushed = commit_and_push(repo, "cron and hooks")
        assert pushed.returncode == 0, (
            pushed.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
        )

        def events() -> list[str]:
            return [json.loads(r["body"])["event"] for r in receiver.requests]

        # deploy.started was answered 500 first, then retried by the worker; deploy.live came once
        wait_for(
            lambda: events().count("deploy.started") == 2 and "deploy.live" in events(),
            timeout=60,
            message=f"the webhook's events (got {events()})",
        )
        assert all(verified(secret, r) for r in receiver.requests)
        live = next(
            json.loads(r["body"])
            for r in receiver.requests
            if json.loads(r["body"])["event"] == "deploy.live"
        )
        assert live["app"] == app and live["message"].startswith("v1 is live")
        log = api.get(f"/teams/{tenant.team.name}/webhooks/{webhook_id}/deliveries").json()
        started = next(d for d in log if d["event"] == "deploy.started")
        assert (started["status"], started["attempts"], started["response_code"]) == ("delivered", 2, 200)

    added = berth_cli(
        berth_platform, tenant, "cron:add", "* * * * *", "-a", app, "--", "echo cron says hello; exit 4"
    )
    assert added.returncode == 0, added.stderr
    queued_at = time.monotonic()

    def logged() -> str:
        result = berth_cli(berth_platform, tenant, "logs", "-a", app, "-n", "500")
        return result.stdout if result.returncode == 0 else ""

    # the first whole minute after adding, plus one tick (15 s) and the run
    wait_for(
        lambda: "exited with status 4" in logged(), timeout=110, message="the job's first run in berth logs"
    )
    lines = logged().splitlines()
    tag = next(line.split("[", 1)[1].split("]", 1)[0] for line in lines if "cron says hello" in line)
    assert tag.startswith("scheduler.")
    assert any(f"scheduler[{tag}]: cron says hello" in line for line in lines)
    assert any(f"berth[{tag}]: Job #" in line and "exited with status 4 after" in line for line in lines)
    listed = berth_cli(berth_platform, tenant, "cron", "-a", app)
    assert "LAST RUN (UTC)" in listed.stdout and "exit 4 in " in listed.stdout, listed.stdout + listed.stderr
    print(f"first cron run logged {time.monotonic() - queued_at:.1f}s after cron:add")

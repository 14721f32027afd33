"""The dashboard against the whole running platform, in a real browser: a line the app prints appears live in the
log tail, and scale and rollback from the page take effect on what the router serves. Nothing is simulated."""

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR, wait_for, write_hello_app
from tests.e2e.test_push_to_live import get, git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
ARTIFACTS = REPO_DIR / "test-artifacts"


@pytest.fixture
def shipper(berth_platform):
    log = open(berth_platform.logs / "shipper.log", "wb")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        [str(REPO_DIR / ".venv/bin/python"), "manage.py", "ship_logs", "--scan-interval", "2"],
        cwd=REPO_DIR,
        env=berth_platform.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def push(repo: Path, message: str) -> None:
    write_hello_app(repo, message, loud=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    result = git(repo, "push", "berth", "main", check=False)
    assert result.returncode == 0, result.stderr


def test_a_line_the_app_prints_appears_live_then_scale_and_rollback_from_the_page(
    page, shipper, repo, tenant, berth_platform
):
    from berth.routing.router import get_router

    app = tenant.app.name
    host = f"{app}.localhost"
    push(repo, "first")
    push(repo, "second")
    assert get(berth_platform.router_port, host).text.strip() == "second"

    page.goto(f"/apps/{app}/")
    page.wait_for_selector("#log-status[data-state='live']")
    marker = f"/hello-{secrets.token_hex(4)}"
    assert get_path(berth_platform.router_port, host, marker) == "second"
    page.wait_for_function(
        "marker => document.querySelector('#log-lines').innerText.includes(marker)", arg=f"served {marker}"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "e2e-app-page-live.png"), full_page=True)

    page.fill("#replicas-web", "2")
    page.click("#formation-save")
    wait_for(
        lambda: len([e for e in get_router().state().get(app, {}).get("endpoints", []) if e[2] == "UP"]) == 2,
        timeout=90,
        interval=0.5,
        message="two web endpoints in rotation",
    )

    page.goto(f"/apps/{app}/")
    page.click("button[data-action='rollback'][data-version='1']")
    wait_for(
        lambda: get(berth_platform.router_port, host).text.strip() == "first",
        timeout=120,
        interval=0.5,
        message="the rollback to v1 serving",
    )


def get_path(port: int, host: str, path: str) -> str:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=10).text.strip()

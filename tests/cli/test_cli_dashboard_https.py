"""The dashboard and API at BERTH_DASHBOARD_HOST through the real HAProxy router's HTTPS (issue 13): the web process
as `make up` runs it (gunicorn on 127.0.0.1 only, its settings from the environment), the router ending TLS with a
certificate from a test CA, and the CLI verifying it with --ca-bundle."""

import os
import signal
import ssl
import subprocess
from types import SimpleNamespace

import httpx
import pytest

from tests.cli.conftest import PASSWORD, as_json, assert_one_error_line, ok
from tests.conftest import REPO_DIR, free_port, manage, wait_for
from tests.support.tls import TestCA

# the lines of deploy/up.sh that choose the web process's bind address (its first `if` on BERTH_DASHBOARD_HOST)
UP_SH_BIND = '/^if \\[ -n "\\$BERTH_DASHBOARD_HOST" \\]/{on=1} on{print} on&&/^fi$/{exit}'
HOST = "localhost"  # the one name besides addresses that resolves to 127.0.0.1 here, as the CLI and git need


@pytest.fixture
def test_ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def dashboard(tmp_path, settings, test_ca):
    from berth.routing.haproxy import haproxy_command, write_config
    from berth.routing.router import get_router

    web_port, http_port, https_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")} | {
        "BERTH_HOME": str(tmp_path / "home"),
        "BERTH_SECRET_KEY": "t",
        "DATABASE_URL": "",  # its own SQLite database: this test's web process shares nothing with the others
        "BERTH_WEB_PORT": str(web_port),
        "BERTH_HTTP_PORT": str(http_port),
        "BERTH_HTTPS_PORT": str(https_port),
        "BERTH_DASHBOARD_HOST": HOST,
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        "BERTH_ROUTER_DIR": str(tmp_path / "router"),
    }
    manage("migrate", "-v0", env=env, check=True)
    manage("ensure_admin", env=env, check=True)

    settings.BERTH_ROUTER = "haproxy"
    settings.BERTH_ROUTER_DIR = tmp_path / "router"
    settings.BERTH_ROUTER_ADMIN_SOCKET = tmp_path / "router" / "admin.sock"
    paths = write_config(http_port=http_port, https_port=https_port, dashboard_host=HOST, web_port=web_port)
    router = subprocess.Popen(haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the web process as the Procfile starts it, with the bind address up.sh chooses for a dashboard host
    bind = subprocess.run(
        ["bash", "-c", f"eval \"$(awk '{UP_SH_BIND}' deploy/up.sh)\"; echo $BERTH_WEB_BIND"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    web = subprocess.Popen(
        [
            str(REPO_DIR / ".venv/bin/gunicorn"),
            "berth.config.asgi:application",
            "--worker-class",
            "berth.config.worker.BerthUvicornWorker",
            "--bind",
            f"{bind}:{web_port}",
            "--workers",
            "1",
        ],
        cwd=REPO_DIR,
        env={**env, "PYTHONPATH": str(REPO_DIR / "platform")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the teardown stops its workers with it
    )
    try:
        wait_for(lambda: settings.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket")
        leaf = test_ca.issue(HOST)
        get_router().certificate_put(name="c-dashboard", pem=leaf.key_pem + leaf.certificate_pem)
        trust = ssl.create_default_context(cafile=test_ca.root_path)
        url = f"https://{HOST}:{https_port}"

        def answers():
            try:
                return httpx.get(f"{url}/healthz", verify=trust, timeout=5).status_code < 500 or None
            except httpx.TransportError:
                return None

        wait_for(answers, timeout=60, message="the web process behind the router")
        yield SimpleNamespace(url=url, http_port=http_port, web_port=web_port, bind=bind, trust=trust)
    finally:
        for process, stop in ((web, lambda: os.killpg(web.pid, signal.SIGTERM)), (router, router.terminate)):
            if process.poll() is None:
                stop()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_the_cli_logs_in_to_the_dashboard_host_over_the_routers_https(berth, home, dashboard, test_ca):
    assert dashboard.bind == "127.0.0.1"  # up.sh's choice with a dashboard host: only the router reaches it
    out = ok(
        berth(
            "login",
            dashboard.url,
            "--ca-bundle",
            str(test_ca.root_path),
            "--username",
            "admin",
            "--password",
            PASSWORD,
        )
    )
    assert out.startswith(f"Logged in to {dashboard.url} as admin")
    assert as_json(berth("whoami", "--json"))["username"] == "admin"
    # the router's certificate is checked: without the test CA the CLI refuses it
    result = berth(
        "login",
        dashboard.url,
        "--username",
        "admin",
        "--password",
        PASSWORD,
        env={"HOME": str(home / "other")},
    )
    assert_one_error_line(result, contains="cannot verify the TLS certificate")


def test_plain_http_is_redirected_to_the_https_port_and_https_answers_carry_hsts(dashboard):
    plain = httpx.get(
        f"http://127.0.0.1:{dashboard.http_port}/api/v1/me?x=1", headers={"Host": HOST}, timeout=10
    )
    assert plain.status_code in (301, 308), plain.status_code
    assert plain.headers["location"] == f"{dashboard.url}/api/v1/me?x=1"

    secure = httpx.get(f"{dashboard.url}/login/", verify=dashboard.trust, timeout=10)
    assert secure.status_code == 200
    assert "max-age=2592000" in secure.headers["strict-transport-security"]
    cookie = secure.headers["set-cookie"]
    assert "csrftoken=" in cookie and "Secure" in cookie


def test_a_sign_in_form_over_https_passes_the_csrf_origin_check(dashboard):
    with httpx.Client(base_url=dashboard.url, verify=dashboard.trust, timeout=10) as browser:
        form = browser.get("/login/")
        token = browser.cookies["csrftoken"]
        answer = browser.post(
            "/login/",
            data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Origin": dashboard.url, "Referer": f"{dashboard.url}/login/"},
        )
        assert form.status_code == 200
        assert answer.status_code == 302, answer.text[:300]
        assert "sessionid" in answer.cookies and "Secure" in answer.headers.get_list("set-cookie")[-1]

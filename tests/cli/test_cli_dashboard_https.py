"""The dashboard and API at BERTH_DASHBOARD_HOST through the real HAProxy router's HTTPS (issue 13): the web process
as `make up` runs it (gunicorn on 127.0.0.1 only, its settings from the environment), the router ending TLS with a
certificate from a test CA, and the CLI verifying it with --ca-bundle."""

import os
import shutil
import ssl
import subprocess
from types import SimpleNamespace

import httpx
import pytest

from tests.cli.conftest import PASSWORD, as_json, assert_one_error_line, ok
from tests.conftest import REPO_DIR, free_port, manage
from tests.support.processes import Child, ChildFailed, listening_sockets, wait_serving
from tests.support.tls import TestCA

# the lines of deploy/up.sh that choose the web process's bind address (its first `if` on BERTH_DASHBOARD_HOST)
UP_SH_BIND = '/^if \\[ -n "\\$BERTH_DASHBOARD_HOST" \\]/{on=1} on{print} on&&/^fi$/{exit}'
HOST = "localhost"  # the one name besides addresses that resolves to 127.0.0.1 here, as the CLI and git need


@pytest.fixture
def test_ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def dashboard(tmp_path, settings, test_ca):
    """HAProxy and the web process on free ports, started again on fresh ones (up to three times) when another
    process took one of them first: free_port() closes the port it found, and with parallel workers another test's
    server can bind it before ours does. Each child's output is kept in a file beside the test's other files and
    shown when it exits or never answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")} | {
        "BERTH_HOME": str(tmp_path / "home"),
        "BERTH_SECRET_KEY": "t",
        "DATABASE_URL": "",  # its own SQLite database: this test's web process shares nothing with the others
        "BERTH_DASHBOARD_HOST": HOST,
        "BERTH_ADMIN_PASSWORD": PASSWORD,
    }
    manage("migrate", "-v0", env=env, check=True)
    manage("ensure_admin", env=env, check=True)
    # the web process as the Procfile starts it, with the bind address up.sh chooses for a dashboard host
    bind = subprocess.run(
        ["bash", "-c", f"eval \"$(awk '{UP_SH_BIND}' deploy/up.sh)\"; echo $BERTH_WEB_BIND"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    leaf = test_ca.issue(HOST)
    trust = ssl.create_default_context(cafile=test_ca.root_path)
    children: list[Child] = []
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                started = start_dashboard(tmp_path, attempt, settings, env, bind, leaf, trust, children)
                break
            except PortTaken as taken:
                for child in reversed(children):
                    child.stop()
                children.clear()
                if attempt == PORT_ATTEMPTS:
                    raise AssertionError(
                        f"a port was taken on each of {PORT_ATTEMPTS} tries: {taken}"
                    ) from None
        yield started
    finally:
        for child in reversed(children):  # the web process first, then the router
            child.stop()


PORT_ATTEMPTS = 3


class PortTaken(Exception):
    pass


def start_dashboard(
    tmp_path, attempt, settings, env, bind, leaf, trust, children: list[Child]
) -> SimpleNamespace:
    from berth.routing.haproxy import admin_command, haproxy_command, write_config
    from berth.routing.router import get_router

    # the router's folder is the same one on each try: the paths of its unix sockets are near HAProxy's limit
    router = tmp_path / "router"
    shutil.rmtree(router, ignore_errors=True)
    ports = []
    while len(ports) < 3:  # three different ones: free_port() may find the port it found a moment ago
        if (port := free_port()) not in ports:
            ports.append(port)
    web_port, http_port, https_port = ports
    env = env | {
        "BERTH_WEB_PORT": str(web_port),
        "BERTH_HTTP_PORT": str(http_port),
        "BERTH_HTTPS_PORT": str(https_port),
        "BERTH_ROUTER_DIR": str(router),
    }
    settings.BERTH_ROUTER = "haproxy"
    settings.BERTH_ROUTER_DIR = router
    settings.BERTH_ROUTER_ADMIN_SOCKET = router / "admin.sock"
    paths = write_config(http_port=http_port, https_port=https_port, dashboard_host=HOST, web_port=web_port)
    children.append(Child("HAProxy", haproxy_command(paths), log=tmp_path / f"haproxy-{attempt}.log"))
    web = Child(
        "the web process",
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
        log=tmp_path / f"web-{attempt}.log",
        group=True,  # its own process group: stop() ends its workers with it
        cwd=REPO_DIR,
        env={**env, "PYTHONPATH": str(REPO_DIR / "platform")},
    )
    children.append(web)
    url = f"https://{HOST}:{https_port}"
    seen = "nothing yet"

    def router_answers():
        # HAProxy serves its admin socket once it has bound every port (or it exits, saying which it could not)
        try:
            return "Name: HAProxy" in admin_command(
                "show info", socket_path=settings.BERTH_ROUTER_ADMIN_SOCKET
            )
        except OSError:
            return False

    def web_answers():
        # the login page: the web process's own answer, never HAProxy's 503 while no web process listens (/healthz
        # would also ask Docker and the swarm, which this test does not use)
        nonlocal seen
        try:
            response = httpx.get(f"{url}/login/", verify=trust, timeout=5)
        except httpx.TransportError as exc:
            seen = repr(exc)
            return False
        seen = f"HTTP {response.status_code}: {response.text[:200]!r}"
        return response.status_code == 200

    def router_alone():
        # checked once HAProxy has its ports (no free_port() finds them then), and again at the end
        shared = [port for port in (http_port, https_port) if listening_sockets(port) > 1]
        if shared:
            raise PortTaken(f"another process listens on the router's port {shared[0]} too")

    try:
        wait_serving(router_answers, children, timeout=10, message="HAProxy's admin socket")
        router_alone()
        # bound by gunicorn itself: not another process's server on that port answering in its place
        listening = f"Listening at: http://{bind}:{web_port} "
        wait_serving(lambda: web.printed(listening), children, timeout=30, message="the web process's port")
        get_router().certificate_put(name="c-dashboard", pem=leaf.key_pem + leaf.certificate_pem)
        wait_serving(
            web_answers,
            children,
            timeout=60,
            message="the web process behind the router",
            last_seen=lambda: seen,
        )
    except ChildFailed as failed:
        if failed.port_taken:
            raise PortTaken(failed) from failed
        raise
    router_alone()
    return SimpleNamespace(url=url, http_port=http_port, web_port=web_port, bind=bind, trust=trust)


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

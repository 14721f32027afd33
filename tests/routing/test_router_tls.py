"""The router on HTTPS, against real HAProxy and real TLS: certificates from a tiny local CA (tests/routing/tls_ca.py)
added, replaced and removed through the runtime API, SNI, ACME challenges, the HTTP->HTTPS redirect, HSTS, the
forwarded headers, a restart from nothing, and the dashboard's hostname."""

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from berth.routing.haproxy import admin_command, haproxy_command, read_crt_list, write_config
from berth.routing.haproxy_router import HaproxyRouter
from berth.routing.router import Endpoint, RouterError, RouterRefused, ServedCertificate, get_router
from websockets.sync.client import connect as websocket_connect

from tests.conftest import NO_TLS, REPO_DIR, free_port, wait_for
from tests.routing.tls_ca import LocalCA, serial_of
from tests.routing.tls_load import (
    HttpsKeepAliveLoad,
    LoopbackHTTPSConnection,
    SerialProbe,
    served_certificate,
    served_serial,
)
from tests.support.backends import start_backend


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture
def backends():
    """Starts backend processes on free loopback ports: backends("a") → Backend; all stopped by PID afterwards."""
    started = []

    def start(ident: str, kind: str = "http"):
        backend = start_backend(ident, port=free_port(), kind=kind)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def echo_headers():
    """A backend in this process answering each request with its headers as JSON; its (address, port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # HAProxy's L4 checks reset their connections

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture
def restarted(router):
    """restarted(**write_config arguments) stops the fixture's HAProxy (or the last restarted one) by SIGKILL, writes
    the configuration again as `manage.py router_run` does and starts a new HAProxy; stopped by PID afterwards."""
    processes = [router.process]

    def restart(**arguments) -> subprocess.Popen:
        os.kill(processes[-1].pid, signal.SIGKILL)
        processes[-1].wait(timeout=10)
        paths = write_config(http_port=router.port, https_port=router.https_port, **arguments)
        process = subprocess.Popen(
            haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        wait_for(lambda: answers(router.port), timeout=10, message="the restarted HAProxy")
        return process

    yield restart
    for process in processes[1:]:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "nobody.localhost"}, timeout=1, verify=NO_TLS)
        return True
    except httpx.HTTPError:
        return False


def https_get(router, ca, hostname: str, path: str = "/", **headers) -> tuple[int, dict, str]:
    connection = LoopbackHTTPSConnection(hostname, router.https_port, context=ca.context())
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def http_get(router, hostname: str, path: str = "/", **headers) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{router.port}{path}", headers={"Host": hostname, **headers}, timeout=10
    )


DEFAULT_SUBJECT = "CN=Berth default certificate"


def test_sni_picks_each_hostnames_certificate_and_an_unknown_name_gets_the_default(router, backends, ca):
    shop, blog = backends("shop"), backends("blog")
    router_ = get_router()
    router_.apply(app="shop", hostnames=["shop.localhost", "www.shop.localhost"], endpoints=[shop.endpoint])
    router_.apply(app="blog", hostnames=["blog.localhost"], endpoints=[blog.endpoint])
    shop_pem, shop_leaf = ca.issue("shop.localhost", "www.shop.localhost")
    blog_pem, blog_leaf = ca.issue("blog.localhost")

    served_shop = router_.certificate_put(name="c-1", pem=shop_pem)
    router_.certificate_put(name="c-2", pem=blog_pem)

    assert served_shop == ServedCertificate(
        name="c-1",
        serial=serial_of(shop_leaf),
        not_after=shop_leaf.not_valid_after_utc.replace(microsecond=0),
        hostnames=("shop.localhost", "www.shop.localhost"),
    )
    assert served_serial(router.https_port, "shop.localhost") == serial_of(shop_leaf)
    assert served_serial(router.https_port, "www.shop.localhost") == serial_of(shop_leaf)
    assert served_serial(router.https_port, "blog.localhost") == serial_of(blog_leaf)
    # verified against the CA, routed by Host like plain HTTP
    assert https_get(router, ca, "shop.localhost")[::2] == (200, "shop")
    assert https_get(router, ca, "blog.localhost")[::2] == (200, "blog")
    # a hostname without a certificate of its own, or no SNI at all: the router's self-signed default
    for hostname in ("nobody.localhost", None):
        default = served_certificate(router.https_port, hostname)
        assert default.subject.rfc4514_string() == DEFAULT_SUBJECT
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(router, ca, "nobody.localhost")
    assert set(router_.certificates()) == {"c-1", "c-2"}
    assert router_.certificates()["c-2"].serial == serial_of(blog_leaf)


def test_a_certificate_replaced_under_keep_alive_https_load_drops_nothing(router, backends, ca):
    web = backends("web")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web.endpoint])
    first, leaf = ca.issue("demo.localhost")
    router_.certificate_put(name="c-1", pem=first)
    delays = []
    with (
        HttpsKeepAliveLoad(
            port=router.https_port, hostname="demo.localhost", context=ca.context(), threads=2, duration=15
        ) as load,
        SerialProbe(port=router.https_port, hostname="demo.localhost", duration=15) as probe,
    ):
        load.wait_for_requests(200)
        for _ in range(5):
            pem, leaf = ca.issue("demo.localhost")
            committing = time.monotonic()
            served = router_.certificate_put(name="c-1", pem=pem)
            assert served.serial == serial_of(leaf)
            wait_for(
                lambda s=serial_of(leaf), t=committing: probe.first_seen(s, since=t),
                timeout=5,
                interval=0.01,
                message="the new serial on a new connection",
            )
            delays.append(probe.first_seen(serial_of(leaf), since=committing) - committing)
            load.wait_for_requests(200)
            time.sleep(2)
    print(
        f"\nHTTPS replacement: {load.total} requests, {len(load.failures)} failed; new serial after {delays}"
    )
    assert load.failures == []
    assert probe.failures == []
    assert load.total > 1000
    # the goal is 1 s (bench/cert_renewal.py measures it: p50 ~35 ms); a test tier running beside the Docker tier
    # once took 1.0001 s on 2 busy CPUs, so the test allows 2 s: a replacement that waits for anything still fails
    assert max(delays) < 2.0
    # keep-alive connections kept their certificate: the replacement closed none of them
    assert load.connections == 2
    assert served_serial(router.https_port, "demo.localhost") == serial_of(leaf)
    assert router_.certificates()["c-1"].serial == serial_of(leaf)


def test_a_removed_certificate_is_no_longer_served(router, ca):
    router_ = get_router()
    kept_pem, kept = ca.issue("kept.localhost")
    gone_pem, gone = ca.issue("gone.localhost")
    router_.certificate_put(name="c-1", pem=kept_pem)
    router_.certificate_put(name="c-2", pem=gone_pem)
    assert served_serial(router.https_port, "gone.localhost") == serial_of(gone)

    router_.certificate_remove(name="c-2")
    router_.certificate_remove(name="c-2")  # a retried removal converges

    assert served_certificate(router.https_port, "gone.localhost").serial_number != gone.serial_number
    assert served_serial(router.https_port, "kept.localhost") == serial_of(kept)
    assert set(router_.certificates()) == {"c-1"}
    assert read_crt_list(router.paths) == [str(router.paths.certificate("c-1"))]
    assert not router.paths.certificate("c-2").exists()


def test_a_router_killed_and_restarted_from_nothing_serves_every_certificate_and_policy(
    router, restarted, backends, ca
):
    router_ = get_router()
    web = backends("web")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web.endpoint])
    bundles = {
        f"c-{n}": ca.issue(f"site{n}.localhost", *(["demo.localhost"] if n == 0 else [])) for n in range(3)
    }
    for name, (pem, _) in bundles.items():
        router_.certificate_put(name=name, pem=pem)
    router_.host_tls_put(hostname="demo.localhost", redirect_https=True, hsts=True)
    router_.challenge_put(token="tok-1", key_authorization="tok-1.thumb")
    before = router_.certificates()
    assert oct(router.paths.certificate("c-0").stat().st_mode & 0o777) == "0o600"

    restarted()  # SIGKILL, then what `manage.py router_run` does: write the configuration, start HAProxy

    # no certificate_put, no CA: HAProxy served them from disk at its start
    for n, (_, leaf) in enumerate(bundles.values()):
        assert served_serial(router.https_port, f"site{n}.localhost") == serial_of(leaf)
    assert router_.certificates() == before
    assert http_get(router, "demo.localhost").status_code == 308
    assert http_get(router, "x.localhost", "/.well-known/acme-challenge/tok-1").text == "tok-1.thumb"
    router_.sync({"demo": (["demo.localhost"], [web.endpoint])})  # the watcher's job after a restart
    status, headers, body = https_get(router, ca, "demo.localhost")
    assert (status, body, headers["strict-transport-security"]) == (200, "web", "max-age=31536000")


def test_a_certificate_limited_to_hostnames_answers_only_for_them_and_keeps_the_limit_across_a_restart(
    router, restarted, ca
):
    """A tenant's certificate may name more than Berth gave its app (a wildcard, another team's hostname): served
    with SNI filters, it answers only for the app's names; every other name gets its own or the default."""
    router_ = get_router()
    pem, leaf = ca.issue("mine.localhost", "theirs.localhost", "later.localhost")
    router_.certificate_put(name="c-1", pem=pem, hostnames=["mine.localhost"])
    assert served_serial(router.https_port, "mine.localhost") == serial_of(leaf)
    for other in ("theirs.localhost", "later.localhost"):
        assert served_certificate(router.https_port, other).subject.rfc4514_string() == DEFAULT_SUBJECT

    # renewed (same limit) and widened: one crt-list line for the file each time, on disk and in HAProxy
    pem2, leaf2 = ca.issue("mine.localhost", "theirs.localhost", "later.localhost")
    router_.certificate_put(name="c-1", pem=pem2, hostnames=["mine.localhost"])
    router_.certificate_put(name="c-1", pem=pem2, hostnames=["mine.localhost", "later.localhost"])
    assert served_serial(router.https_port, "later.localhost") == serial_of(leaf2)
    assert read_crt_list(router.paths).count(str(router.paths.certificate("c-1"))) == 1
    running = admin_command(f"show ssl crt-list {router.paths.crt_list}")
    assert running.count(str(router.paths.certificate("c-1"))) == 1

    restarted()
    assert served_serial(router.https_port, "later.localhost") == serial_of(leaf2)
    assert (
        served_certificate(router.https_port, "theirs.localhost").subject.rfc4514_string() == DEFAULT_SUBJECT
    )
    router_.certificate_remove(name="c-1")
    assert served_certificate(router.https_port, "mine.localhost").subject.rfc4514_string() == DEFAULT_SUBJECT
    with pytest.raises(RouterRefused):
        router_.certificate_put(name="c-2", pem=pem, hostnames=["bad name"])


def test_plain_http_redirects_with_308_to_the_https_port_keeping_path_and_query(router, backends):
    router_ = get_router()
    web = backends("web")
    router_.apply(app="demo", hostnames=["demo.localhost", "plain.localhost"], endpoints=[web.endpoint])
    router_.host_tls_put(hostname="Demo.localhost", redirect_https=True, hsts=False)

    response = http_get(router, "demo.localhost:8080", "/a/b?c=1&d=%20")

    assert response.status_code == 308
    assert response.headers["location"] == f"https://demo.localhost:{router.https_port}/a/b?c=1&d=%20"
    assert http_get(router, "plain.localhost").text == "web"  # no policy: plain HTTP served

    router_.host_tls_put(hostname="demo.localhost", redirect_https=False, hsts=True)
    assert http_get(router, "demo.localhost").text == "web"
    router_.host_tls_put(hostname="demo.localhost", redirect_https=True, hsts=True)
    router_.host_tls_remove(hostname="demo.localhost")
    router_.host_tls_remove(hostname="demo.localhost")
    assert http_get(router, "demo.localhost").text == "web"


def test_the_redirect_location_has_no_port_on_443(tmp_path, settings):
    paths = write_config(http_port=18080, https_port=443, directory=tmp_path)
    config = paths.config.read_text()
    assert "location https://%[var(txn.host)]%[pathq]" in config
    result = subprocess.run(["haproxy", "-c", "-f", str(paths.config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_an_acme_challenge_is_answered_on_every_hostname_before_any_redirect_or_app(router, backends):
    router_ = get_router()
    web = backends("web")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web.endpoint])
    router_.host_tls_put(hostname="demo.localhost", redirect_https=True, hsts=False)
    token = "Ab_c-D" * 7

    router_.challenge_put(token=token, key_authorization=f"{token}.thumb_print")
    router_.challenge_put(token=token, key_authorization=f"{token}.other_print")  # replaced, not doubled

    for hostname in ("demo.localhost", "unknown.localhost"):
        response = http_get(router, hostname, f"/.well-known/acme-challenge/{token}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain"
        assert response.text == f"{token}.other_print"
    # an unknown token on a redirecting host reaches the app, not the redirect
    assert http_get(router, "demo.localhost", "/.well-known/acme-challenge/nope").text == "web"
    assert http_get(router, "demo.localhost", "/elsewhere").status_code == 308

    router_.challenge_remove(token=token)
    router_.challenge_remove(token=token)
    assert http_get(router, "unknown.localhost", f"/.well-known/acme-challenge/{token}").status_code == 404
    assert router.paths.acme_map.read_text() == ""


def test_hsts_only_on_https_answers_for_hsts_hosts(router, backends, ca):
    router_ = get_router()
    web = backends("web")
    router_.apply(app="demo", hostnames=["secure.localhost", "loose.localhost"], endpoints=[web.endpoint])
    router_.certificate_put(name="c-1", pem=ca.issue("secure.localhost", "loose.localhost")[0])
    router_.host_tls_put(hostname="secure.localhost", redirect_https=False, hsts=True)
    router_.host_tls_put(hostname="loose.localhost", redirect_https=False, hsts=False)

    status, headers, body = https_get(router, ca, "secure.localhost")
    assert (status, body, headers["strict-transport-security"]) == (200, "web", "max-age=31536000")
    status, headers, body = https_get(router, ca, "loose.localhost")
    assert (status, body) == (200, "web")
    assert "strict-transport-security" not in headers
    assert "strict-transport-security" not in http_get(router, "secure.localhost").headers


def test_the_app_learns_the_scheme_and_the_client_address_from_the_router(router, echo_headers, ca):
    router_ = get_router()
    address, port = echo_headers
    router_.apply(app="echo", hostnames=["echo.localhost"], endpoints=[Endpoint(address, port)])
    router_.certificate_put(name="c-1", pem=ca.issue("echo.localhost")[0])

    # a client's own X-Forwarded-Proto is replaced: only the router says how the request came in
    over_http = http_get(router, "echo.localhost", **{"X-Forwarded-Proto": "https"}).json()
    status, _, body = https_get(router, ca, "echo.localhost", **{"X-Forwarded-For": "203.0.113.9"})
    over_https = json.loads(body)

    assert over_http["x-forwarded-proto"] == "http"
    assert over_http["x-forwarded-for"] == "127.0.0.1"
    assert over_https["x-forwarded-proto"] == "https"
    assert over_https["x-forwarded-for"].replace(" ", "").split(",")[-1] == "127.0.0.1"


def test_websockets_work_over_tls(router, backends, ca):
    echo = backends("ws-1", kind="ws")
    router_ = get_router()
    router_.apply(app="chat", hostnames=["chat.localhost"], endpoints=[echo.endpoint])
    router_.certificate_put(name="c-1", pem=ca.issue("chat.localhost")[0])
    sock = socket.create_connection(("127.0.0.1", router.https_port))
    with websocket_connect(
        f"wss://chat.localhost:{router.https_port}/", sock=sock, ssl=ca.context(), open_timeout=5
    ) as websocket:
        for n in range(3):
            websocket.send(f"hello {n}")
            assert websocket.recv(timeout=5) == f"ws-1:hello {n}"


def test_malformed_tokens_names_and_bundles_are_refused_with_nothing_changed(router, ca):
    router_ = get_router()
    pem, _ = ca.issue("a.localhost")
    list_before = router.paths.crt_list.read_text()
    for call in (
        lambda: router_.challenge_put(token="a/b", key_authorization="a.b"),
        lambda: router_.challenge_put(token="tok", key_authorization="tok.b extra"),
        lambda: router_.challenge_remove(token="tok en"),
        lambda: router_.certificate_put(name="../escape", pem=pem),
        lambda: router_.certificate_put(name="c-1", pem="-----BEGIN CERTIFICATE-----\nnope\n"),
        lambda: router_.certificate_put(name="c-1", pem=pem.split("-----END PRIVATE KEY-----\n")[1]),
        # beyond what the admin socket takes in one payload
        lambda: router_.certificate_put(name="c-1", pem=pem + ca.pem * 30),
        lambda: router_.certificate_remove(name="C 1"),
        lambda: router_.host_tls_put(hostname="a.localhost; del map x", redirect_https=True, hsts=True),
    ):
        with pytest.raises(RouterRefused):
            call()
    assert issubclass(RouterRefused, RouterError)
    assert router.paths.crt_list.read_text() == list_before
    assert not router.paths.certificates_dir.exists() or list(router.paths.certificates_dir.iterdir()) == []
    assert router.paths.acme_map.read_text() == router.paths.redirect_map.read_text() == ""
    assert router_.certificates() == {}


def test_the_dashboard_hostname_reaches_the_web_process_over_http_and_https(router, restarted, backends, ca):
    web = backends("berth-web")
    restarted(dashboard_host="Berth.Localhost", web_port=web.port)
    router_ = get_router()
    router_.certificate_put(name="c-1", pem=ca.issue("berth.localhost")[0])

    assert http_get(router, "berth.localhost").text == "berth-web"
    assert https_get(router, ca, "berth.localhost")[::2] == (200, "berth-web")
    assert http_get(router, "other.localhost").status_code == 404


def test_a_router_without_https_refuses_certificates_and_still_answers_challenges(tmp_path, settings):
    directory = tmp_path / "plain"
    port = free_port()
    paths = write_config(http_port=port, https_port=0, directory=directory)
    assert "frontend https" not in paths.config.read_text()
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: answers(port), timeout=10, message="HAProxy")
        router_ = HaproxyRouter(directory=directory, admin_socket=directory / "admin.sock")
        router_.challenge_put(token="tok", key_authorization="tok.print")
        router_.host_tls_put(hostname="a.localhost", redirect_https=True, hsts=True)
        response = httpx.get(
            f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok", headers={"Host": "a.localhost"}
        )
        assert response.text == "tok.print"
        assert router_.certificates() == {}
        with pytest.raises(RouterError, match="no HTTPS frontend"):
            router_.certificate_put(name="c-1", pem=LocalCA().issue("a.localhost")[0])
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_router_grown_by_a_reload_serves_every_certificate(router, restarted, backends, ca):
    restarted(backends=1, servers=1)  # a pool of one backend slot: the second app makes it reload
    router_ = get_router()
    web = [backends(f"web{n}") for n in range(2)]
    pem, leaf = ca.issue("app0.localhost", "app1.localhost")
    router_.certificate_put(name="c-1", pem=pem)
    router_.apply(app="app0", hostnames=["app0.localhost"], endpoints=[web[0].endpoint])

    router_.apply(app="app1", hostnames=["app1.localhost"], endpoints=[web[1].endpoint])

    assert '"backends": 2' in router.paths.slots.read_text()
    assert served_serial(router.https_port, "app0.localhost") == serial_of(leaf)
    assert https_get(router, ca, "app1.localhost")[::2] == (200, "web1")
    assert router_.certificates()["c-1"].serial == serial_of(leaf)


def test_a_transaction_left_open_by_a_dead_call_does_not_block_the_next_put(router, ca):
    router_ = get_router()
    stray = router.paths.directory / "stray.pem"
    pem, leaf = ca.issue("a.localhost")
    assert "New empty" in admin_command(f"new ssl cert {stray}")
    assert "Transaction created" in admin_command(f"set ssl cert {stray}", payload=pem)

    served = router_.certificate_put(name="c-1", pem=pem)

    assert served.serial == serial_of(leaf)
    assert served_serial(router.https_port, "a.localhost") == serial_of(leaf)
    assert "# transaction" not in admin_command("show ssl cert")


def test_a_certificate_file_gone_bad_on_disk_is_left_out_so_haproxy_still_starts(router, restarted, ca):
    router_ = get_router()
    good_pem, good = ca.issue("good.localhost")
    router_.certificate_put(name="c-1", pem=ca.issue("bad.localhost")[0])
    router_.certificate_put(name="c-2", pem=good_pem)
    router.paths.certificate("c-1").write_text("truncated by a full disk\n")

    restarted()

    assert served_serial(router.https_port, "good.localhost") == serial_of(good)
    assert set(router_.certificates()) == {"c-2"}
    assert read_crt_list(router.paths) == [str(router.paths.certificate("c-2"))]


def test_router_run_starts_haproxy_with_https_from_the_settings(tmp_path):
    """`manage.py router_run` as the Procfile runs it: ports, folder and dashboard hostname from the environment."""
    http_port, https_port, directory = free_port(), free_port(), tmp_path / "router"
    env = {
        **os.environ,
        "BERTH_ROUTER_DIR": str(directory),
        "BERTH_ROUTER_ADMIN_SOCKET": str(directory / "admin.sock"),
        "BERTH_HTTP_PORT": str(http_port),
        "BERTH_HTTPS_PORT": str(https_port),
        "BERTH_DASHBOARD_HOST": "berth.localhost",
        "BERTH_WEB_PORT": str(free_port()),
    }
    process = subprocess.Popen(
        [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), "router_run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers(http_port), timeout=20, message="router_run's HAProxy")
        default = served_certificate(https_port, "app.localhost")
        assert default.subject.rfc4514_string() == DEFAULT_SUBJECT
        # the dashboard's hostname is routed (to a web process not running here: 503, not the 404 page)
        response = httpx.get(f"http://127.0.0.1:{http_port}/", headers={"Host": "berth.localhost"}, timeout=5)
        assert response.status_code == 503
        assert oct((directory / "default.pem").stat().st_mode & 0o777) == "0o600"
    finally:
        process.terminate()
        process.wait(timeout=10)

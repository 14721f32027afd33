"""HTTPS through the whole running platform: a new app's first `git push` gets an ACME certificate for its built-in
hostname with no other action, served by the real HAProxy router and verified against the CA's root; plain HTTP
redirects until the app turns the redirect off; a custom domain added with the CLI gets a certificate of its own.

The CA is Debian's pebble (tests/support/pebble.py), its DNS answering 127.0.0.1 for every name so it validates
HTTP-01 through this test's router. The apps domain is apps.localhost so that www.<app>.localhost can be a custom
domain (names under the apps domain are Berth's own) that berth.certs counts as pointing at this router (.localhost
is loopback).
"""

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.conftest import REPO_DIR, wait_for, write_hello_app
from tests.support.pebble import PebbleStarter, challtestsrv_running

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

APPS_DOMAIN = "apps.localhost"
ISSUE_TIMEOUT_S = 180  # an ACME order against a local pebble takes seconds; the machine may be loaded


@pytest.fixture
def pebble(tmp_path, router):
    """A pebble validating HTTP-01 on this test's router, for this test only; stopped by PID."""
    directory = tmp_path / "pebble"
    directory.mkdir()
    with challtestsrv_running(directory) as dns_server:
        starter = PebbleStarter(directory, dns_server)
        try:
            yield starter.start(router.port)
        finally:
            starter.stop_all()


@pytest.fixture
def platform_env(router, pebble, settings) -> dict:
    """ACME on against the pebble, the router's HTTPS port known: what the platform's processes read at start."""
    settings.BERTH_APPS_DOMAIN = (
        APPS_DOMAIN  # this process names the app's hostname too (tenant.app.hostname)
    )
    settings.BERTH_ACME_DIRECTORY = pebble.directory_url
    settings.BERTH_ACME_CA_BUNDLE = str(pebble.ca_bundle)
    return {
        **pebble.env,
        "BERTH_ACME_EMAIL": "ops@example.test",
        "BERTH_HTTPS_PORT": str(router.https_port),
        "BERTH_APPS_DOMAIN": APPS_DOMAIN,
    }


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300, check=check)


def commit_and_push(repo: Path, message: str) -> subprocess.CompletedProcess:
    write_hello_app(repo, message)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "push", "berth", "main", check=False)


def https_get(port: int, hostname: str, root_pem: str) -> httpx.Response:
    """GET / over TLS to 127.0.0.1:`port` with SNI and Host `hostname`, the certificate verified against `root_pem`
    (pebble's root) and the name."""
    context = ssl.create_default_context(cadata=root_pem)
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(
            f"https://127.0.0.1:{port}/",
            headers={"Host": hostname},
            extensions={"sni_hostname": hostname},
        )


def served_certificate(port: int, hostname: str, root_pem: str) -> x509.Certificate | None:
    """The certificate the router presents for `hostname` if it verifies against `root_pem`, else None (the router's
    self-signed default, or nothing listening)."""
    context = ssl.create_default_context(cadata=root_pem)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=hostname) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    except (ssl.SSLError, OSError):
        return None


def http_get(port: int, hostname: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": hostname}, timeout=10)


def berth_cli(*args: str, platform, token: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "BERTH_URL": platform.web_url, "BERTH_TOKEN": token}
    return subprocess.run(
        [str(REPO_DIR / ".venv/bin/berth"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def wait_until_served(port: int, hostname: str, root_pem: str, *, started: float, logs: Path) -> float:
    """Seconds from `started` (a monotonic time) until the router serves a certificate for `hostname` that pebble's
    root verifies; fails with the worker's log past ISSUE_TIMEOUT_S."""

    def served() -> bool:
        return served_certificate(port, hostname, root_pem) is not None

    try:
        wait_for(served, timeout=ISSUE_TIMEOUT_S, interval=0.1, message=f"a certificate for {hostname}")
    except AssertionError as error:
        raise AssertionError(
            f"{error}\n{(logs / 'worker.log').read_text(errors='replace')[-4000:]}"
        ) from None
    return time.monotonic() - started


def test_first_push_gets_https_redirect_off_serves_http_and_a_custom_domain_gets_its_own_certificate(
    repo, tenant, berth_platform, router, pebble, tmp_path
):
    from berth.certs.models import Certificate, CertificateSource, CertificateState

    app = tenant.app
    host = app.hostname
    assert host == f"{app.name}.{APPS_DOMAIN}"
    https_url = f"https://{host}:{router.https_port}"
    root = pebble.root_pem()
    cli_home = tmp_path / "cli-home"
    cli_home.mkdir()

    # 1. the first push: nothing else asked, the built-in hostname gets its certificate
    pushed_at = time.monotonic()
    first = commit_and_push(repo, "version one")
    push_s = time.monotonic() - pushed_at
    assert first.returncode == 0, first.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    # the push answers before the certificate exists (it is issued once the release is live): http:// for now
    assert f"is live at http://{host}:{router.port}" in first.stderr, first.stderr
    assert f"remote:        HTTPS: a certificate for {host} is being issued" in first.stderr, first.stderr
    to_https_s = wait_until_served(router.https_port, host, root, started=pushed_at, logs=berth_platform.logs)
    answer = https_get(router.https_port, host, root)
    assert answer.status_code == 200 and answer.text.strip() == "version one", answer
    (certificate,) = Certificate.objects.filter(app=app)
    assert certificate.source == CertificateSource.ACME and certificate.state == CertificateState.ISSUED
    assert certificate.hostnames == [host]
    served = served_certificate(router.https_port, host, root)
    assert format(served.serial_number, "X") == certificate.serial

    # plain HTTP redirects to the HTTPS URL (the redirect is on by default once a certificate is served)
    plain = http_get(router.port, host)
    assert plain.status_code == 308, (plain.status_code, plain.text[:200])
    assert plain.headers["location"] == f"{https_url}/"
    # the ACME challenge path is never redirected (a renewal must reach Berth over HTTP)
    challenge = httpx.get(
        f"http://127.0.0.1:{router.port}/.well-known/acme-challenge/none",
        headers={"Host": host},
        timeout=10,
    )
    assert challenge.status_code != 308

    # the app's URL is the HTTPS one now: in the API (and so the CLI) ...
    headers = {"Authorization": f"Bearer {tenant.token}"}
    detail = httpx.get(f"{berth_platform.web_url}/api/v1/apps/{app.name}", headers=headers, timeout=30)
    assert detail.json()["url"] == https_url, detail.text

    # 2. the redirect turned off with the CLI: plain HTTP serves the app again, HTTPS still does
    result = berth_cli(
        "https:redirect", "off", "-a", app.name, platform=berth_platform, token=tenant.token, home=cli_home
    )
    assert result.returncode == 0, result.stderr
    plain = http_get(router.port, host)
    assert plain.status_code == 200 and plain.text.strip() == "version one", plain
    assert https_get(router.https_port, host, root).text.strip() == "version one"

    # 3. a custom domain gets a certificate of its own, from `domains:add` alone
    custom = f"www.{app.name}.localhost"
    added_at = time.monotonic()
    result = berth_cli(
        "domains:add", custom, "-a", app.name, platform=berth_platform, token=tenant.token, home=cli_home
    )
    assert result.returncode == 0, result.stderr
    domain_s = wait_until_served(router.https_port, custom, root, started=added_at, logs=berth_platform.logs)
    names = served_certificate(router.https_port, custom, root).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == [custom]
    answer = https_get(router.https_port, custom, root)
    assert answer.status_code == 200 and answer.text.strip() == "version one", answer
    # the app's redirect is off: the new name serves plain HTTP too
    assert http_get(router.port, custom).status_code == 200
    assert sorted(c.hostnames[0] for c in Certificate.objects.filter(app=app, state="issued")) == sorted(
        [host, custom]
    )

    # 4. ... and in the push output of the next deploy
    second = commit_and_push(repo, "version two")
    assert second.returncode == 0, second.stderr
    assert f"is live at {https_url} " in second.stderr, second.stderr
    assert f"{https_url} deployed to Berth" in second.stderr, second.stderr
    assert "is being issued" not in second.stderr
    assert https_get(router.https_port, host, root).text.strip() == "version two"

    print(
        f"\nfirst push {push_s:.1f} s; push start → HTTPS served {to_https_s:.1f} s; "
        f"domains:add (CLI) → certificate served {domain_s:.1f} s"
    )

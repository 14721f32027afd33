"""A real ACME CA for the certificate tests: Debian's pebble, its DNS pointed at pebble-challtestsrv, which answers
every name with 127.0.0.1, so pebble's HTTP-01 validation fetches the challenge from the test's own router.

Both are started by PID and stopped by PID. pebble's own TLS certificate (its WFE) is made here with `cryptography`
and trusted through BERTH_ACME_CA_BUNDLE; the root it issues from is fetched from its management API, to verify
what the router serves.
"""

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from berth.core.redis import redis_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, wait_for

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
CERT_VALIDITY_SECONDS = 90 * 24 * 3600  # like Let's Encrypt's, so two thirds of it is 60 days


def _pebble_tls(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for pebble's own HTTPS on 127.0.0.1 (the Debian package ships none)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test WFE")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "wfe-cert.pem", directory / "wfe-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(autouse=True)
def _no_leftover_certificate_locks():
    """A run killed mid-sweep or mid-attempt leaves its locks for their TTL, and the test database numbers
    certificates from 1 again: this test's sweeps and attempts must run."""
    client = redis_client()
    leftovers = [*client.scan_iter("berth:lock:cert:*"), *client.scan_iter("berth:lock:certs:*")]
    if leftovers:
        client.delete(*leftovers)


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory):
    """pebble-challtestsrv as pebble's DNS server: every A query answers 127.0.0.1, no AAAA (the router listens on
    IPv4), its own challenge servers off."""
    directory = tmp_path_factory.mktemp("challtestsrv")
    dns_port, management_port = free_port(), free_port()
    log = (directory / "challtestsrv.log").open("wb")
    process = subprocess.Popen(
        [
            CHALLTESTSRV,
            "-defaultIPv4", "127.0.0.1",
            "-defaultIPv6", "",
            "-dns01", f"127.0.0.1:{dns_port}",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
            "-management", f"127.0.0.1:{management_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: _port_open(management_port), timeout=10, message="pebble-challtestsrv")
        yield f"127.0.0.1:{dns_port}"
    finally:
        _stop(process)
        log.close()


@dataclass
class Pebble:
    """One running pebble: its directory URL, the bundle that trusts its HTTPS, and (once asked) its root."""

    directory_url: str
    ca_bundle: Path
    management_port: int
    process: subprocess.Popen
    log_path: Path
    roots: list[str] = field(default_factory=list)

    def root_pem(self) -> str:
        """The root of the chains pebble issues (new at each start), from its management API."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310 - loopback
            return response.read().decode()

    def stop(self) -> None:
        _stop(self.process)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_pebble(tmp_path, challtestsrv):
    """start_pebble(http_port) → a running Pebble validating HTTP-01 on http://<name>:<http_port>; each one
    started is stopped by PID at the end of the test."""
    started: list[Pebble] = []
    wfe_cert, wfe_key = _pebble_tls(tmp_path)

    def start(http_port: int, *, listen_port: int | None = None) -> Pebble:
        listen_port = listen_port or free_port()
        management_port = free_port()
        config = tmp_path / f"pebble-{listen_port}.json"
        config.write_text(
            '{"pebble": {'
            f'"listenAddress": "127.0.0.1:{listen_port}", '
            f'"managementListenAddress": "127.0.0.1:{management_port}", '
            f'"certificate": "{wfe_cert}", "privateKey": "{wfe_key}", '
            f'"httpPort": {http_port}, "tlsPort": {free_port()}, '
            '"ocspResponderURL": "", "externalAccountBindingRequired": false, '
            f'"certificateValidityPeriod": {CERT_VALIDITY_SECONDS}'
            "}}"
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",  # every order validates again: a renewal goes through the router too
        }
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
        log_path = tmp_path / f"pebble-{listen_port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PEBBLE, "-config", str(config), "-dnsserver", challtestsrv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        pebble = Pebble(
            directory_url=f"https://127.0.0.1:{listen_port}/dir",
            ca_bundle=wfe_cert,
            management_port=management_port,
            process=process,
            log_path=log_path,
        )
        started.append(pebble)
        wait_for(
            lambda: process.poll() is not None or (_port_open(listen_port) and _port_open(management_port)),
            timeout=15,
            message="pebble to listen",
        )
        assert process.poll() is None, f"pebble exited:\n{pebble.log}"
        return pebble

    yield start
    for pebble in started:
        pebble.stop()

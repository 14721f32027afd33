"""A real ACME CA for tests and benchmarks: Debian's pebble, its DNS pointed at pebble-challtestsrv, which answers
every name with 127.0.0.1, so pebble's HTTP-01 validation fetches the challenge from the local router.

Both are started by PID and stopped by PID. pebble's own TLS certificate (its WFE) is made here with `cryptography`
and trusted through BERTH_ACME_CA_BUNDLE; the root it issues from is fetched from its management API, to verify
what the router serves. tests/certs/conftest.py and tests/e2e wrap these in fixtures; bench/cert_issue.py uses them
directly.
"""

import os
import signal
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.support.tls import loopback_certificate

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
CERT_VALIDITY_SECONDS = 90 * 24 * 3600  # like Let's Encrypt's, so two thirds of it is 60 days


def pebble_tls(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for pebble's own HTTPS on 127.0.0.1 (the Debian package ships none)."""
    return loopback_certificate(directory, common_name="pebble test WFE", stem="wfe-", days=2)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM by PID, SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def challtestsrv_running(directory: Path) -> Iterator[str]:
    """pebble-challtestsrv as pebble's DNS server: every A query answers 127.0.0.1, no AAAA (the router listens on
    IPv4), its own challenge servers off. Yields its DNS address (host:port)."""
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
        wait_for(lambda: port_open(management_port), timeout=10, message="pebble-challtestsrv")
        yield f"127.0.0.1:{dns_port}"
    finally:
        stop_process(process)
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
        stop_process(self.process)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def env(self) -> dict[str, str]:
        """The settings that point Berth's ACME client at this pebble."""
        return {"BERTH_ACME_DIRECTORY": self.directory_url, "BERTH_ACME_CA_BUNDLE": str(self.ca_bundle)}


class PebbleStarter:
    """Starts pebbles (in `directory`, resolving names through `dns_server`) and stops each one it started."""

    def __init__(self, directory: Path, dns_server: str):
        self.directory, self.dns_server = directory, dns_server
        self.started: list[Pebble] = []
        self.wfe_cert, self.wfe_key = pebble_tls(directory)

    def start(self, http_port: int, *, listen_port: int | None = None) -> Pebble:
        """A running pebble validating HTTP-01 on http://<name>:<http_port>."""
        listen_port = listen_port or free_port()
        management_port = free_port()
        config = self.directory / f"pebble-{listen_port}.json"
        config.write_text(
            '{"pebble": {'
            f'"listenAddress": "127.0.0.1:{listen_port}", '
            f'"managementListenAddress": "127.0.0.1:{management_port}", '
            f'"certificate": "{self.wfe_cert}", "privateKey": "{self.wfe_key}", '
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
        log_path = self.directory / f"pebble-{listen_port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PEBBLE, "-config", str(config), "-dnsserver", self.dns_server],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        pebble = Pebble(
            directory_url=f"https://127.0.0.1:{listen_port}/dir",
            ca_bundle=self.wfe_cert,
            management_port=management_port,
            process=process,
            log_path=log_path,
        )
        self.started.append(pebble)
        wait_for(
            lambda: process.poll() is not None or (port_open(listen_port) and port_open(management_port)),
            timeout=15,
            message="pebble to listen",
        )
        assert process.poll() is None, f"pebble exited:\n{pebble.log}"
        return pebble

    def stop_all(self) -> None:
        for pebble in self.started:
            pebble.stop()

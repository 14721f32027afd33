"""A real ACME CA for the certificate tests (tests/support/pebble.py): Debian's pebble, its DNS pointed at
pebble-challtestsrv, which answers every name with 127.0.0.1, so pebble's HTTP-01 validation fetches the challenge
from the test's own router. Each started by PID and stopped by PID."""

import pytest
from berth.core.redis import redis_client

from tests.support.pebble import PebbleStarter, challtestsrv_running


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
    """pebble-challtestsrv as pebble's DNS server, for the session; its DNS address."""
    with challtestsrv_running(tmp_path_factory.mktemp("challtestsrv")) as dns_server:
        yield dns_server


@pytest.fixture
def start_pebble(tmp_path, challtestsrv):
    """start_pebble(http_port) → a running Pebble validating HTTP-01 on http://<name>:<http_port>; each one
    started is stopped by PID at the end of the test."""
    starter = PebbleStarter(tmp_path, challtestsrv)
    try:
        yield starter.start
    finally:
        starter.stop_all()

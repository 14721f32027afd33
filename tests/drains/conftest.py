"""An app of a fresh team (its log stream removed before and after), the drain receivers' certificate, and a
forwarder started by the test under its own lease (another forwarder on the same Redis never takes its work)."""

import uuid

import pytest

from tests.drains.receivers import self_signed


@pytest.fixture
def rds():
    from berth.core.redis import redis_client

    return redis_client()


@pytest.fixture
def drain_app(transactional_db, make_user, make_team, make_app, rds, monkeypatch):
    from berth.observe.services import events_key, logs_key

    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")  # the receivers are on 127.0.0.1
    monkeypatch.setenv("BERTH_DRAINS_MAX_BACKOFF", "2")
    owner = make_user()
    app = make_app(f"dr-{uuid.uuid4().hex[:10]}", team=make_team(owner=owner), actor=owner)
    rds.delete(logs_key(app.name), events_key(app.name))
    app.owner = owner
    yield app
    rds.delete(logs_key(app.name), events_key(app.name))


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("BERTH_DRAINS_CA_BUNDLE", str(cert))
    return cert, key


@pytest.fixture
def forwarder(rds):
    from berth.drains.forwarder import Forwarder

    started = []

    def start():
        started.append(
            Forwarder(interval=0.1, lease_key=f"berth:drains:forwarder:test-{uuid.uuid4().hex}").start()
        )
        return started[-1]

    yield start
    for one in started:
        one.stop()


from tests.cli.conftest import ada, berth, cli, fast_passwords, home, shop  # noqa: E402, F401 - fixtures, used by name

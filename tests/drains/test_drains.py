"""Log drains against real receivers on 127.0.0.1 (syslog over TCP and TLS, HTTPS), the forwarder running in a
thread as it runs inside ship_logs: RFC 5424 lines of every source, buffering while the receiver is down, drops
counted past the stream's cap; and the API's refusals, permissions and audit entries."""

import re
import time

import pytest
from berth.audit.models import AuditEvent
from berth.core.redis import redis_client
from berth.drains.forwarder import forwarder_start
from berth.drains.models import Drain
from berth.drains.services import drain_add, drain_remove
from berth.observe.services import event_record, log_entries_append, logs_key
from berth.observe.shipper import COMPANIONS
from berth.observe.traffic import ROUTER_PROCESS

from tests.drains.receivers import HttpsReceiver, SyslogReceiver

RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) - - (.*)$")


def app_lines(app, count: int, start: int = 0, stream: str = "stdout") -> None:
    log_entries_append(
        app=app.name,
        entries=[
            {
                "ts": "2026-12-05T08:00:00.000000Z",
                "process": "web",
                "instance": "web.1",
                "stream": stream,
                "line": f"line {number}",
            }
            for number in range(start, start + count)
        ],
    )


def rds_delete(app: str) -> None:
    redis_client().delete(logs_key(app))


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def every_source(app) -> None:
    app_lines(app, 2)
    app_lines(app, 1, start=2, stream="stderr")
    log_entries_append(
        app=app.name,
        entries=[
            {
                "ts": "2026-12-05T08:00:01.000000Z",
                "process": ROUTER_PROCESS,
                "instance": ROUTER_PROCESS,
                "stream": ROUTER_PROCESS,
                "line": 'at=info method=GET path="/" status=200',
            }
        ],
    )
    event_record(app=app.name, kind="release.live", message="release v3 live")


def check_every_source(app, messages: list[str]) -> None:
    parsed = [RFC5424.match(m) for m in messages]
    assert all(parsed), messages
    assert [(p[1], p[3], p[4], p[5], p[6]) for p in parsed] == [
        ("190", app.name, "app", "web.1", "line 0"),
        ("190", app.name, "app", "web.1", "line 1"),
        ("187", app.name, "app", "web.1", "line 2"),  # stderr: severity error
        ("190", app.name, "berth", "router", 'at=info method=GET path="/" status=200'),
        ("190", app.name, "berth", "release.live", "release v3 live"),
    ]
    assert parsed[0][2] == "2026-12-05T08:00:00.000000Z"


def test_a_syslog_drain_gets_every_line_of_the_app_as_rfc5424(drain_app, forwarder):
    app_lines(drain_app, 3, start=100)  # logged before the drain was added: not sent
    receiver = SyslogReceiver().start()
    try:
        drain = drain_add(app=drain_app, url=f"syslog://127.0.0.1:{receiver.port}")
        every_source(drain_app)
        forwarder()
        assert wait_for(lambda: len(receiver.messages) >= 5, 10)
        # counted once the send returned, which can be a moment after the receiver has the lines
        wait_for(lambda: Drain.objects.get(pk=drain.pk).delivered == 5, 10)
    finally:
        receiver.stop()
    check_every_source(drain_app, receiver.messages)
    drain.refresh_from_db()
    assert (drain.delivered, drain.dropped, drain.last_error) == (5, 0, "")
    assert drain.last_success_at is not None


def test_a_tls_syslog_drain_verifies_the_receiver(drain_app, forwarder, certificate):
    receiver = SyslogReceiver(certificate=certificate).start()
    try:
        drain_add(app=drain_app, url=f"syslog+tls://localhost:{receiver.port}")
        every_source(drain_app)
        forwarder()
        assert wait_for(lambda: len(receiver.messages) >= 5, 10)
    finally:
        receiver.stop()
    check_every_source(drain_app, receiver.messages)


def test_a_tls_drain_with_an_unknown_certificate_is_not_sent_to(
    drain_app, forwarder, certificate, monkeypatch
):
    monkeypatch.delenv(
        "BERTH_DRAINS_CA_BUNDLE"
    )  # certifi's roots: the self-signed certificate is not trusted
    receiver = SyslogReceiver(certificate=certificate).start()
    try:
        drain = drain_add(app=drain_app, url=f"syslog+tls://localhost:{receiver.port}")
        app_lines(drain_app, 2)
        forwarder()
        assert wait_for(lambda: bool(Drain.objects.get(pk=drain.pk).last_error), 10)
    finally:
        receiver.stop()
    drain.refresh_from_db()
    assert "CERTIFICATE_VERIFY_FAILED" in drain.last_error and drain.delivered == 0
    assert receiver.messages == []


def test_an_https_drain_gets_logplex_batches(drain_app, forwarder, certificate):
    receiver = HttpsReceiver(certificate).start()
    try:
        drain = drain_add(app=drain_app, url=f"https://localhost:{receiver.port}/logs?token=abc")
        every_source(drain_app)
        forwarder()
        assert wait_for(lambda: len(receiver.messages) >= 5, 10)
    finally:
        receiver.stop()
    check_every_source(drain_app, receiver.messages)
    request = receiver.requests[0]
    assert request["path"] == "/logs?token=abc" and request["rest"] == b""
    assert request["headers"]["Content-Type"] == "application/logplex-1"
    assert request["headers"]["Logplex-Drain-Token"] == drain.token
    assert sum(int(r["headers"]["Logplex-Msg-Count"]) for r in receiver.requests) == 5


def test_lines_logged_while_the_receiver_is_down_arrive_when_it_is_back(drain_app, forwarder):
    receiver = SyslogReceiver().start()
    port = receiver.port
    try:
        drain = drain_add(app=drain_app, url=f"syslog://127.0.0.1:{port}")
        forwarder()
        app_lines(drain_app, 10)
        assert wait_for(lambda: len(receiver.messages) == 10, 10)
        receiver.stop()
        down_at = time.monotonic()
        for second in range(8):  # ~8 s down, the app logging throughout
            app_lines(drain_app, 20, start=10 + 20 * second)
            time.sleep(1)
        assert wait_for(lambda: bool(Drain.objects.get(pk=drain.pk).last_error), 5)
        assert Drain.objects.get(pk=drain.pk).delivered == 10
        receiver = SyslogReceiver(port=port).start()  # back, on the same port
        assert wait_for(lambda: len(receiver.messages) >= 160, 15), len(receiver.messages)
        caught_up = time.monotonic() - down_at
    finally:
        receiver.stop()
    assert [RFC5424.match(m)[6] for m in receiver.messages] == [f"line {n}" for n in range(10, 170)]
    # the forwarder counts a batch once its send returned: the receiver can hold the lines a moment before that
    wait_for(lambda: Drain.objects.get(pk=drain.pk).delivered == 170, 10)
    drain.refresh_from_db()
    assert (drain.delivered, drain.dropped) == (170, 0)
    assert caught_up < 25


def test_lines_trimmed_by_the_streams_cap_before_delivery_are_counted_as_dropped(
    drain_app, forwarder, monkeypatch
):
    monkeypatch.setenv("BERTH_LOG_RETENTION_LINES", "10")  # a tiny cap (MAXLEN ~: whole nodes of 100 go)
    receiver = SyslogReceiver().start()
    port = receiver.port
    receiver.stop()  # down from the start
    drain = drain_add(app=drain_app, url=f"syslog://127.0.0.1:{port}")
    forwarder()
    for batch in range(10):
        app_lines(drain_app, 100, start=100 * batch)
    receiver = SyslogReceiver(port=port).start()
    try:
        assert wait_for(
            lambda: (lambda d: d.delivered + d.dropped == 1000)(Drain.objects.get(pk=drain.pk)), 15
        )
        time.sleep(0.3)
    finally:
        receiver.stop()
    drain.refresh_from_db()
    numbers = [int(RFC5424.match(m)[6].split()[1]) for m in receiver.messages]
    state = (drain.delivered, drain.dropped, len(numbers))
    assert drain.dropped >= 800 and drain.delivered == len(numbers), state
    # each line at most once and in order, the newest among them (which lines of the middle made it depends on
    # when a send read the stream while it was being written: what was not sent is in `dropped`)
    assert numbers == sorted(set(numbers)) and numbers[-1] == 999, state


def test_drains_are_added_and_removed_with_audit_entries(drain_app):
    drain = drain_add(app=drain_app, url="syslog://127.0.0.1:6514", actor=drain_app.owner)
    assert drain.token.startswith("d.")
    drain_remove(app=drain_app, url_or_id="syslog://127.0.0.1:6514", actor=drain_app.owner)
    assert not Drain.objects.filter(app=drain_app).exists()
    actions = list(AuditEvent.objects.filter(action__startswith="drain.").values_list("action", "data"))
    assert [a for a, _ in actions] == ["drain.add", "drain.remove"] or sorted(a for a, _ in actions) == [
        "drain.add",
        "drain.remove",
    ]
    assert all(data["host"] == "127.0.0.1" and data["scheme"] == "syslog" for _, data in actions)


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://logs.example.org:21", "a drain URL is syslog://host:port"),
        ("syslog://127.0.0.1", "needs its port"),
        ("syslog://127.0.0.1:514/x", "without a path"),
        ("http://127.0.0.1:8080/", "a drain URL is syslog://host:port"),
        ("https://user:pw@127.0.0.1/", "must not hold a user"),
    ],
)
def test_the_api_refuses_a_bad_drain_url_with_a_json_detail(drain_app, token_client, url, detail):
    response = token_client(drain_app.owner).post(
        f"/api/v1/apps/{drain_app.name}/drains", {"url": url}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("url: ") and detail in response.json()["detail"]
    assert not Drain.objects.exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]"])
def test_the_api_refuses_a_private_address_unless_allowed(drain_app, token_client, monkeypatch, host):
    monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE")
    response = token_client(drain_app.owner).post(
        f"/api/v1/apps/{drain_app.name}/drains", {"url": f"syslog+tls://{host}:6514"}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert "private, loopback or reserved" in response.json()["detail"], response.json()


def test_another_team_can_neither_list_nor_add_nor_remove_drains(
    drain_app, token_client, make_user, make_team
):
    drain = drain_add(app=drain_app, url="syslog://127.0.0.1:6514")
    outsider = make_user()
    make_team(owner=outsider)
    client = token_client(outsider)
    base = f"/api/v1/apps/{drain_app.name}/drains"
    assert client.get(base).status_code == 404
    assert client.post(base, {"url": "syslog://127.0.0.1:6515"}, format="json").status_code == 404
    assert client.delete(f"{base}/{drain.pk}").status_code == 404
    assert list(Drain.objects.values_list("url", flat=True)) == ["syslog://127.0.0.1:6514"]
    owner = token_client(drain_app.owner)
    listed = owner.get(base).json()
    assert [(d["id"], d["delivered"], d["dropped"]) for d in listed] == [(drain.pk, 0, 0)]
    assert owner.delete(f"{base}/{drain.pk}").status_code == 204
    assert owner.delete(f"{base}/{drain.pk}").json()["detail"] == "no such drain on this app"


def test_the_forwarder_runs_inside_the_log_shippers_process():
    assert forwarder_start in COMPANIONS  # ship_logs starts every companion beside the shipper


def test_a_slow_receiver_does_not_hold_up_another_drain(drain_app, forwarder, certificate, make_app):
    other = make_app(f"{drain_app.name}-b", team=drain_app.team)
    slow = HttpsReceiver(certificate, delay=6).start()
    fast = SyslogReceiver().start()
    try:
        drain_add(app=drain_app, url=f"https://localhost:{slow.port}/")
        drain_add(app=other, url=f"syslog://127.0.0.1:{fast.port}")
        app_lines(drain_app, 1)
        forwarder()
        time.sleep(1)  # the slow drain's POST is under way
        started = time.monotonic()
        app_lines(other, 3)
        assert wait_for(lambda: len(fast.messages) == 3, 10)
        assert time.monotonic() - started < 3  # not after the slow receiver's 6 s
        assert wait_for(lambda: len(slow.messages) == 1, 15)
    finally:
        fast.stop()
        slow.stop()
        rds_delete(other.name)

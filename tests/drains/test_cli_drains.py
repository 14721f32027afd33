"""`berth drains`, `drains:add`, `drains:remove` through the installed script against a live server, the lines sent
to a syslog receiver on 127.0.0.1 by the forwarder."""

import time

import pytest
from berth.observe.services import app_streams_delete, event_record

from tests.cli.conftest import as_json, assert_one_error_line, ok
from tests.drains.receivers import SyslogReceiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_list_and_remove_a_drain(cli, shop, forwarder, monkeypatch):
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")  # the live server runs in this process
    app_streams_delete(app=shop)
    receiver = SyslogReceiver().start()
    url = f"syslog://127.0.0.1:{receiver.port}"
    try:
        out = ok(cli("drains:add", url, "-a", shop))
        assert out.startswith("Added drain ") and f"to shop: {url}" in out and "(d." in out
        event_record(app=shop, kind="release.live", message="release v2 live")
        forwarder()
        deadline = time.monotonic() + 10
        while not receiver.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.messages and receiver.messages[0].endswith(
            " shop berth release.live - - release v2 live"
        )
        # counted once the send returned, which can be a moment after the receiver has the line
        deadline = time.monotonic() + 10
        while (
            as_json(cli("drains", "-a", shop, "--json"))[0]["delivered"] != 1 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        [drain] = as_json(cli("drains", "-a", shop, "--json"))
        assert (drain["url"], drain["delivered"], drain["dropped"]) == (url, 1, 0)
        listed = ok(cli("drains", "-a", shop))
        assert url in listed and "DELIVERED" in listed and "never" not in listed
        assert ok(cli("drains:remove", url, "-a", shop)) == f"Removed drain {url} from shop\n"
        assert_one_error_line(cli("drains:remove", url, "-a", shop), contains=f"shop has no drain {url}")
        assert_one_error_line(cli("drains:remove", str(drain["id"]), "-a", shop), contains="no such drain")
        assert ok(cli("drains", "-a", shop)).startswith("shop has no log drains")
    finally:
        receiver.stop()
        app_streams_delete(app=shop)


def test_a_bad_drain_url_is_one_error_line(cli, shop, monkeypatch):
    monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    assert_one_error_line(cli("drains:add", "syslog://169.254.169.254:514", "-a", shop), contains="private")
    assert_one_error_line(
        cli("drains:add", "udp://logs.example.org:514", "-a", shop), contains="syslog://host:port"
    )
    assert_one_error_line(
        cli("drains:add", "syslog://logs.example.org", "-a", shop), contains="needs its port"
    )

"""`berth webhooks`, `webhooks:add`, `webhooks:deliveries`, `webhooks:remove` through the installed script against
a live server, the events sent to a receiver on 127.0.0.1."""

import pytest
from berth.hooks.models import WebhookDelivery
from berth.hooks.services import delivery_attempt
from berth.observe.services import app_streams_delete, event_record

from tests.cli.conftest import as_json, assert_one_error_line, ok
from tests.hooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_list_deliveries_and_remove(cli, shop, monkeypatch):
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")  # the live server runs in this process
    monkeypatch.setenv("BERTH_WEBHOOKS_RETRY_SECONDS", "0")
    with Receiver([500, 204]) as receiver:
        out = ok(cli("webhooks:add", receiver.url, "--events", "deploy.live,deploy.failed", "-t", "acme"))
        assert out.startswith("Added webhook ") and "deploy.live, deploy.failed" in out
        assert "Signing secret (shown once, keep it): whsec_" in out and "Berth-Signature" in out
        [webhook] = as_json(cli("webhooks", "-t", "acme", "--json"))
        assert webhook["url"] == receiver.url and "secret" not in webhook
        assert receiver.url in ok(cli("webhooks", "-t", "acme"))

        event_record(app=shop, kind="release.failed", message="v2 failed: health check")
        delivery = WebhookDelivery.objects.get()
        delivery_attempt(delivery_id=delivery.pk)
        pending = ok(cli("webhooks:deliveries", str(webhook["id"]), "-t", "acme"))
        assert (
            "deploy.failed" in pending and "pending (next try" in pending and "answered HTTP 500" in pending
        )
        delivery_attempt(delivery_id=delivery.pk)
    [row] = as_json(cli("webhooks:deliveries", str(webhook["id"]), "-t", "acme", "--json"))
    assert (row["status"], row["attempts"], row["response_code"]) == ("delivered", 2, 204)
    assert len(receiver.requests) == 2

    assert ok(cli("webhooks:remove", str(webhook["id"]), "-t", "acme")) == (
        f"Removed webhook {webhook['id']} from team acme\n"
    )
    assert_one_error_line(
        cli("webhooks:remove", str(webhook["id"]), "-t", "acme"), contains="no such webhook"
    )
    app_streams_delete(app=shop)


def test_a_private_url_is_one_error_line(cli, monkeypatch):
    monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    result = cli("webhooks:add", "http://169.254.169.254/latest", "-t", "acme")
    assert_one_error_line(result, contains="private, loopback or reserved address")
    assert_one_error_line(
        cli("webhooks:add", "mailto:x@example.test", "--slack", "-t", "acme"), contains="mailto"
    )
    assert ok(cli("webhooks", "-t", "acme")).startswith("team acme has no webhooks")

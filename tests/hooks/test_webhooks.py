"""Outbound webhooks against real local receivers on 127.0.0.1: app events recorded the platform's way
(observe.services.event_record) become signed POSTs the receiver verifies with the secret shown once, a failed
answer is retried, the delivery log says what happened; Slack-compatible and e-mail (SMTP) senders; SSRF refusals."""

import hashlib
import hmac
import json

import pytest
from berth.audit.models import AuditEvent
from berth.hooks.models import DeliveryStatus, WebhookDelivery
from berth.hooks.services import MAX_ATTEMPTS, delivery_attempt, webhook_add
from berth.observe.services import app_streams_delete, event_record

from tests.hooks.receiver import Receiver, SmtpReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_allowed(monkeypatch):
    """The receivers listen on 127.0.0.1, which Berth refuses unless allowed; retries due at once."""
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("BERTH_WEBHOOKS_RETRY_SECONDS", "0")


@pytest.fixture
def demo_streams(world):
    yield
    app_streams_delete(app="demo")


def verify(secret: str, header: str, body: bytes) -> bool:
    """What a receiver does with Berth-Signature: t=<ts>,v1=<hex of HMAC-SHA256(secret, "<ts>." + body)>."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def test_a_signed_event_reaches_the_receiver_after_a_failed_first_answer(
    world, private_allowed, demo_streams
):
    with Receiver([500, 200]) as receiver:
        added = world.client("admin").post(
            "/api/v1/teams/acme/webhooks",
            {"url": receiver.url, "events": ["deploy.live", "deploy.failed"]},
            format="json",
        )
        assert added.status_code == 201, added.content
        secret = added.json()["secret"]
        assert secret.startswith("whsec_")
        assert "secret" not in world.client("admin").get("/api/v1/teams/acme/webhooks").json()[0]

        event_record(app="demo", kind="release.live", message="v2 is live")
        [delivery] = WebhookDelivery.objects.all()

        first = delivery_attempt(delivery_id=delivery.pk)
        assert (first.status, first.attempts, first.response_code) == (DeliveryStatus.PENDING, 1, 500)
        second = delivery_attempt(delivery_id=delivery.pk)
        assert (second.status, second.attempts, second.response_code) == (DeliveryStatus.DELIVERED, 2, 200)
        assert delivery_attempt(delivery_id=delivery.pk).attempts == 2  # done: a repeated task sends nothing

    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert verify(secret, request["headers"]["Berth-Signature"], request["body"])
        assert not verify("whsec_wrong", request["headers"]["Berth-Signature"], request["body"])
    payload = json.loads(receiver.requests[1]["body"])
    assert payload["event"] == "deploy.live" and payload["app"] == "demo" and payload["team"] == "acme"
    assert payload["message"] == "v2 is live" and payload["id"] == delivery.pk
    assert receiver.requests[1]["headers"]["Berth-Event"] == "deploy.live"

    log = world.client("admin").get(f"/api/v1/teams/acme/webhooks/{added.json()['id']}/deliveries").json()
    assert [(d["status"], d["attempts"], d["response_code"]) for d in log] == [("delivered", 2, 200)]
    assert AuditEvent.objects.filter(action="webhook.add", target=f"webhook #{added.json()['id']}").exists()


def test_an_event_the_webhook_did_not_subscribe_to_sends_nothing(world, private_allowed, demo_streams):
    webhook_add(team=world.team, url="http://127.0.0.1:9/hook", events=["deploy.failed"])
    event_record(app="demo", kind="release.live", message="v2 is live")
    event_record(app="demo", kind="scaled", message="scaled")  # no webhook event at all
    assert not WebhookDelivery.objects.exists()
    event_record(app="demo", kind="release.failed", message="v3 failed")
    assert WebhookDelivery.objects.get().event == "deploy.failed"


def test_a_receiver_that_keeps_failing_ends_failed_after_the_last_attempt(
    world, private_allowed, demo_streams
):
    with Receiver([503]) as receiver:
        webhook_add(team=world.team, url=receiver.url, events=None)
        event_record(app="demo", kind="release.rollback", message="rolling back to v1 as v3")
        delivery = WebhookDelivery.objects.get()
        for _ in range(MAX_ATTEMPTS + 2):
            delivery = delivery_attempt(delivery_id=delivery.pk)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", MAX_ATTEMPTS, 503)
    assert delivery.event == "deploy.rolled_back" and len(receiver.requests) == MAX_ATTEMPTS
    assert "HTTP 503" in delivery.last_error


def test_retries_wait_with_backoff(world, monkeypatch, demo_streams):
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")  # the default 10 s base: the retry is not due yet
    with Receiver([500, 200]) as receiver:
        webhook_add(team=world.team, url=receiver.url, events=None)
        event_record(app="demo", kind="cert.alarm", message="expires soon")
        delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
        assert 8 <= (delivery.next_attempt_at - delivery.created_at).total_seconds() <= 60
        assert delivery_attempt(delivery_id=delivery.pk).attempts == 1  # not due: nothing sent
    assert len(receiver.requests) == 1


def test_a_big_answer_is_read_only_in_part(world, private_allowed, demo_streams):
    with Receiver([200], body=b"x" * (8 * 1024 * 1024)) as receiver:
        webhook_add(team=world.team, url=receiver.url, events=None)
        event_record(app="demo", kind="release.live", message="v2")
        delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert delivery.status == "delivered"


def test_repeated_crashes_make_one_notification(world, private_allowed, demo_streams):
    from berth.core.redis import redis_client

    redis_client().delete("berth:hooks:crashes:demo", "berth:hooks:crashed-told:demo")
    webhook_add(team=world.team, url="http://127.0.0.1:9/hook", events=["app.crashed"])
    for slot in range(6):
        event_record(app="demo", kind="crashed", message=f"web.{slot} crashed and was restarted")
    assert WebhookDelivery.objects.filter(event="app.crashed").count() == 1
    redis_client().delete("berth:hooks:crashes:demo", "berth:hooks:crashed-told:demo")


def test_a_failed_or_unverified_addon_backup_is_a_backup_alarm(world, private_allowed, demo_streams):
    webhook_add(team=world.team, url="http://127.0.0.1:9/hook", events=["backup.alarm"])
    event_record(app="demo", kind="addon.backup.captured", message="backup b001 of db: 4096 bytes")
    event_record(app="demo", kind="addon.backup.failed", message="backup b002 of db failed")
    event_record(app="demo", kind="addon.backup.verify_failed", message="backup b001 of db does not restore")
    deliveries = WebhookDelivery.objects.order_by("pk")
    assert [(d.event, d.payload["message"]) for d in deliveries] == [
        ("backup.alarm", "backup b002 of db failed"),
        ("backup.alarm", "backup b001 of db does not restore"),
    ]


def test_the_slack_sender_posts_text(world, private_allowed, demo_streams):
    with Receiver([200]) as receiver:
        _, secret = webhook_add(team=world.team, url=receiver.url, events=None, slack=True)
        event_record(app="demo", kind="release.failed", message="v3 failed: health check")
        delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert delivery.status == "delivered" and secret == ""
    assert json.loads(receiver.requests[0]["body"]) == {
        "text": "[acme/demo] deploy.failed: v3 failed: health check"
    }


def test_the_email_sender_mails_through_smtp(world, settings, demo_streams):
    with SmtpReceiver() as smtp:
        settings.BERTH_EMAIL_ENABLED = True
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        response = world.client("owner").post(
            "/api/v1/teams/acme/webhooks", {"url": "mailto:ops@example.test,dev@example.test"}, format="json"
        )
        assert response.status_code == 201 and response.json()["kind"] == "email"
        event_record(app="demo", kind="release.live", message="v2 is live")
        delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert delivery.status == "delivered"
    [message] = smtp.messages
    assert sorted(message["rcpt"]) == ["dev@example.test", "ops@example.test"]
    assert b"Subject: [Berth] demo: deploy.live" in message["data"] and b"v2 is live" in message["data"]


def test_email_with_smtp_off_fails_the_delivery_saying_so(world, settings, demo_streams):
    settings.BERTH_EMAIL_ENABLED = False
    webhook_add(team=world.team, url="mailto:ops@example.test", events=None)
    event_record(app="demo", kind="release.live", message="v2")
    delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert delivery.status == "failed" and "BERTH_SMTP_URL" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_private_address_is_refused_unless_allowed(world, url, monkeypatch):
    monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    response = world.client("admin").post("/api/v1/teams/acme/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    assert "private, loopback or reserved" in response.json()["detail"]
    assert "\n" not in response.json()["detail"]
    assert not world.team.webhooks.exists()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"url": "ftp://example.org/x"}, "not an http(s) URL"),
        ({"url": "http://user:pw@1.1.1.1/x"}, "must not hold a user"),
        ({"url": "mailto:not-an-address"}, "not an e-mail address"),
        ({"url": "https://1.1.1.1/x", "events": ["deploy.exploded"]}, "unknown event 'deploy.exploded'"),
        ({"url": "https://1.1.1.1/x", "events": "deploy.live"}, "must be a list"),
    ],
)
def test_a_bad_webhook_is_refused_in_one_line(world, body, text):
    response = world.client("admin").post("/api/v1/teams/acme/webhooks", body, format="json")
    assert response.status_code == 400 and text in response.json()["detail"]
    assert not world.team.webhooks.exists()


def test_a_target_turned_private_after_it_was_added_is_refused_at_sending(world, monkeypatch, demo_streams):
    """Allowed when added, refused when sent: the check runs again for every attempt (e.g. DNS now points inside)."""
    with Receiver([200]) as receiver:
        monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")
        webhook_add(team=world.team, url=receiver.url, events=None)
        monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE")
        event_record(app="demo", kind="release.live", message="v2")
        delivery = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert delivery.status == "failed" and "private, loopback" in delivery.last_error
    assert receiver.requests == []


def test_removing_a_webhook_is_audited(world):
    webhook, _ = webhook_add(team=world.team, url="mailto:ops@example.test", events=None)
    client = world.client("admin")
    assert client.delete(f"/api/v1/teams/acme/webhooks/{webhook.pk}").status_code == 204
    assert client.delete(f"/api/v1/teams/acme/webhooks/{webhook.pk}").status_code == 404
    assert AuditEvent.objects.filter(action="webhook.remove", target=f"webhook #{webhook.pk}").exists()


def test_a_failed_build_is_told_unless_its_release_failed(world, demo_streams):
    from berth.builds.models import Build
    from berth.builds.services import build_fail

    webhook_add(team=world.team, url="mailto:ops@example.test", events=["build.failed", "deploy.failed"])
    compile_error = Build.objects.create(
        app=world.app, source="image", image_ref="demo:v2", status="building"
    )
    build_fail(compile_error, "error: pip install failed")
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.event == "build.failed"
    assert delivery.payload["message"] == f"build {compile_error.pk} of demo failed: pip install failed"
    build_fail(compile_error, "error: again")  # already failed: no second transition, no second delivery
    rolled_out = Build.objects.create(
        app=world.app, source="image", image_ref="demo:v3", status="building", release=world.release
    )
    build_fail(rolled_out, "the release failed")
    assert WebhookDelivery.objects.count() == 1


def test_https_is_verified_against_the_url_host_while_connecting_to_the_checked_address(
    world, private_allowed, demo_streams, tmp_path, monkeypatch
):
    """The connection goes to the address Berth checked, but TLS still checks the certificate against the URL's
    host name (SNI and name), with the CA bundle of BERTH_WEBHOOKS_CA_BUNDLE: a certificate for localhost is
    good for https://localhost:…, not for https://127.0.0.1:… (the same address, another name)."""
    from tests.support.tls import TestCA, TlsTerminator

    ca = TestCA(tmp_path / "ca")
    monkeypatch.setenv("BERTH_WEBHOOKS_CA_BUNDLE", str(ca.root_path))
    with Receiver([200]) as receiver:
        tls = TlsTerminator(ca.issue("localhost"), int(receiver.url.split(":")[2].split("/")[0]))
        try:
            webhook_add(team=world.team, url=f"https://localhost:{tls.port}/hook?x=1", events=["deploy.live"])
            webhook_add(team=world.team, url=f"https://127.0.0.1:{tls.port}/hook", events=["deploy.live"])
            event_record(app="demo", kind="release.live", message="v2")
            verified, mismatched = [
                delivery_attempt(delivery_id=d.pk) for d in WebhookDelivery.objects.order_by("webhook_id")
            ]
        finally:
            tls.stop()
    assert verified.status == "delivered" and verified.response_code == 200
    assert mismatched.status == "pending" and mismatched.response_code is None
    assert "SSLError" in mismatched.last_error and "127.0.0.1" in mismatched.last_error
    assert len(receiver.requests) == 1 and receiver.requests[0]["headers"]["Host"] == f"localhost:{tls.port}"

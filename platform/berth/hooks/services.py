"""Writes of outbound webhooks: add and remove a team's webhooks, turn an app event into deliveries, and one
delivery attempt (signed POST, Slack-compatible POST or e-mail) with its retries.

An app event (berth.observe.services.event_record → signal event_recorded; a queued build → deploy.started) is
mapped onto a webhook event (EVENT_OF_KIND), and every webhook of the app's team that subscribes to it gets a
WebhookDelivery row; the receiver queues one attempt per row. An attempt claims its row with a conditional update
(two workers never send the same attempt), sends, and records the answer: a 2xx delivers it, anything else is
retried after 10 s, 30 s, 90 s… (BERTH_WEBHOOKS_RETRY_SECONDS × 3^n) up to MAX_ATTEMPTS.

HTTP bodies are signed like Stripe's: header `Berth-Signature: t=<unix time>,v1=<hex>` where hex is
HMAC-SHA256(secret, "<t>." + body). The receiver recomputes it with the secret shown when the webhook was added.

Tenants choose these URLs, so every request is checked first (SSRF): http(s) only, and every address the host
resolves to must be a public one (no loopback, private, link-local, shared or reserved range) unless
BERTH_WEBHOOKS_ALLOW_PRIVATE is on. The connection goes to the very address that was checked (the Host header and
TLS name stay the URL's), so a name that resolves elsewhere a moment later (DNS rebinding) cannot redirect it; no
redirects are followed, answers are read up to 4 KB, 5 s to connect and 10 s to answer. HTTPS is verified against
certifi's CA bundle, or BERTH_WEBHOOKS_CA_BUNDLE (a receiver behind a private CA).
"""

import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import time
import urllib.parse
from datetime import datetime, timedelta

import certifi
import redis
import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from berth.accounts.models import Team
from berth.apps.crypto import decrypt_text, encrypt_text
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.core.env import env, env_int
from berth.core.outbound import OutboundRefused as WebhookRefused
from berth.core.outbound import url_address, url_check, url_refusal
from berth.core.redis import redis_client
from berth.hooks.models import EVENTS, DeliveryStatus, Webhook, WebhookDelivery, WebhookKind

logger = logging.getLogger(__name__)

MAX_WEBHOOKS_PER_TEAM = 20
MAX_ATTEMPTS = 6
CLAIM_SECONDS = (
    60  # an attempt's hold on its row; a worker killed mid-attempt lets the next one retry after it
)
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 10
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "Berth-Webhooks/1"
# the platform's app event kinds (berth.observe) → the webhook events they are
EVENT_OF_KIND = {
    "release.live": "deploy.live",
    "release.failed": "deploy.failed",
    "release.rollback": "deploy.rolled_back",
    "cert.alarm": "cert.alarm",
    # an add-on backup that failed, or whose verification by a restore failed (an event on each attached app)
    "addon.backup.failed": "backup.alarm",
    "addon.backup.verify_failed": "backup.alarm",
    "crashed": "app.crashed",
}
# "crashed repeatedly": this many crashes of an app within the window make one app.crashed, once per window
CRASHES_FOR_ALARM = 3
CRASH_WINDOW_SECONDS = 600


def retry_base_seconds() -> int:
    return env_int("BERTH_WEBHOOKS_RETRY_SECONDS", 10, minimum=0, maximum=3600)


def _emails(target: str) -> list[str]:
    addresses = [a.strip() for a in target.removeprefix("mailto:").split(",") if a.strip()]
    if not addresses or len(addresses) > 10:
        raise ValidationError({"url": "mailto: needs 1 to 10 e-mail addresses, comma-separated"})
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError({"url": f"{address!r} is not an e-mail address"}) from None
    return addresses


def webhook_add(
    *,
    team: Team,
    url: str,
    events: list[str] | None,
    slack: bool = False,
    actor=None,
    remote_addr: str | None = None,
) -> tuple[Webhook, str]:
    """Add a webhook to `team`: an http(s) URL (signed POSTs; Slack-compatible with `slack`) or `mailto:a@b,c@d`.
    Returns it and its signing secret in clear (shown this once; "" for Slack and e-mail)."""
    url = (url or "").strip()
    if not url or len(url) > 2000:
        raise ValidationError({"url": "is required (at most 2000 characters)"})
    chosen = list(EVENTS) if not events else list(dict.fromkeys(events))
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise ValidationError({"events": f"unknown event {unknown[0]!r}; one of {', '.join(EVENTS)}"})
    secret = ""
    if url.startswith("mailto:"):
        if slack:
            raise ValidationError({"url": "a Slack webhook is an https URL, not mailto:"})
        kind, target = WebhookKind.EMAIL, ",".join(_emails(url))
    else:
        refusal = url_refusal(url)
        if refusal:
            raise ValidationError({"url": refusal})
        kind, target = (WebhookKind.SLACK if slack else WebhookKind.HTTP), url
        if not slack:
            secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()  # two adds at once cannot pass the cap
        if Webhook.objects.filter(team=team).count() >= MAX_WEBHOOKS_PER_TEAM:
            raise ValidationError(
                {"url": f"team {team.name} has {MAX_WEBHOOKS_PER_TEAM} webhooks, the most allowed"}
            )
        webhook = Webhook.objects.create(
            team=team,
            kind=kind,
            target=target,
            events=chosen,
            secret_encrypted=encrypt_text(secret) if secret else "",
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            action="webhook.add",
            actor=actor,
            team=team,
            target=f"webhook #{webhook.pk}",
            remote_addr=remote_addr,
            # the host only: a Slack URL's path is its secret
            data={"kind": kind, "host": urllib.parse.urlsplit(target).hostname or "e-mail", "events": chosen},
        )
    return webhook, secret


def webhook_remove(*, team: Team, webhook_id: int, actor=None, remote_addr: str | None = None) -> None:
    """Remove a team's webhook and its delivery log (Webhook.DoesNotExist if the team has no such webhook)."""
    webhook = Webhook.objects.get(team=team, pk=webhook_id)
    with transaction.atomic():
        audit_record(
            action="webhook.remove",
            actor=actor,
            team=team,
            target=f"webhook #{webhook.pk}",
            remote_addr=remote_addr,
            data={"kind": webhook.kind},
        )
        webhook.delete()


def _crashed_repeatedly(app_name: str) -> bool:
    """True once per window when an app has crashed CRASHES_FOR_ALARM times within it (counted in Redis)."""
    client = redis_client()
    try:
        count_key = f"berth:hooks:crashes:{app_name}"
        with client.pipeline(transaction=True) as pipe:
            pipe.incr(count_key)
            pipe.expire(count_key, CRASH_WINDOW_SECONDS, nx=True)
            count, _ = pipe.execute()
        if count < CRASHES_FOR_ALARM:
            return False
        return bool(client.set(f"berth:hooks:crashed-told:{app_name}", 1, nx=True, ex=CRASH_WINDOW_SECONDS))
    except redis.RedisError:
        logger.exception("crash count of %s not kept", app_name)
        return False


def event_deliveries_create(*, app_name: str, kind: str, message: str, ts: str = "") -> list[int]:
    """The deliveries an app event makes (one per subscribed webhook of the app's team); their ids, to queue.
    Events no webhook event maps to, and apps that are gone, make none."""
    event = EVENT_OF_KIND.get(kind, kind if kind in EVENTS else None)
    if event is None:
        return []
    app = App.objects.select_related("team").filter(name=app_name).first()
    if app is None:
        return []
    webhooks = [w for w in Webhook.objects.filter(team=app.team) if event in w.events]
    if not webhooks:
        return []
    if event == "app.crashed" and not _crashed_repeatedly(app_name):
        return []
    payload = {
        "event": event,
        "app": app.name,
        "team": app.team.name,
        "message": message,
        "url": app.url,
        "created_at": ts or timezone.now().isoformat().replace("+00:00", "Z"),
    }
    now = timezone.now()
    created = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=w, event=event, payload=payload, next_attempt_at=now) for w in webhooks]
    )
    return [d.pk for d in created]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Berth-Signature header value of `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def ca_bundle() -> str:
    return env("BERTH_WEBHOOKS_CA_BUNDLE") or certifi.where()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST to `url` at the address just checked; the answer's status code (its body read up to
    MAX_RESPONSE_BYTES, then dropped). WebhookRefused, socket and urllib3 errors as they come."""
    parts = url_check(url)
    address = url_address(parts)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle(),
            server_hostname=parts.hostname,  # SNI and the certificate's name: the URL's host, not the address
            assert_hostname=parts.hostname,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, maxsize=1, retries=False)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={
                "Host": parts.netloc,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                **headers,
            },
            redirect=False,
            retries=False,
            preload_content=False,
        )
        try:
            response.read(MAX_RESPONSE_BYTES, decode_content=False)
        finally:
            response.release_conn()
        return response.status
    finally:
        pool.close()


def _text(payload: dict) -> str:
    return f"[{payload['team']}/{payload['app']}] {payload['event']}: {payload['message']}"


def _send(delivery: WebhookDelivery) -> int | None:
    """Send one delivery; the HTTP status (None for e-mail). Raises WebhookRefused, requests' and SMTP errors."""
    webhook, payload = delivery.webhook, delivery.payload
    if webhook.kind == WebhookKind.EMAIL:
        if not settings.BERTH_EMAIL_ENABLED:
            raise WebhookRefused("this server does not send e-mail (BERTH_SMTP_URL is not set)")
        send_mail(
            f"[Berth] {payload['app']}: {payload['event']}",
            _text(payload) + f"\n\n{payload.get('url') or ''}\nat {payload['created_at']} (UTC)\n",
            settings.DEFAULT_FROM_EMAIL,
            webhook.target.split(","),
        )
        return None
    if webhook.kind == WebhookKind.SLACK:
        return _post(webhook.target, json.dumps({"text": _text(payload)}).encode(), {})
    body = json.dumps({"id": delivery.pk, **payload}, separators=(",", ":")).encode()
    headers = {
        "Berth-Event": delivery.event,
        "Berth-Delivery": str(delivery.pk),
        "Berth-Signature": signature(decrypt_text(webhook.secret_encrypted), int(time.time()), body),
    }
    return _post(webhook.target, body, headers)


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """One attempt of a pending, due delivery; records the answer and when to retry. Idempotent: a delivery not
    due, taken by another worker, or done is left alone. None if it is gone."""
    now = now or timezone.now()
    if not WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)):
        return WebhookDelivery.objects.filter(pk=delivery_id).first()
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    attempts = delivery.attempts + 1
    code, error, final = None, "", False
    try:
        code = _send(delivery)
        if code is not None and not 200 <= code < 300:
            error = f"answered HTTP {code}"
    except WebhookRefused as exc:
        error, final = str(exc), True  # a refused target stays refused: no retry
    except (urllib3.exceptions.HTTPError, smtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    fields = {"attempts": attempts, "response_code": code, "last_error": error[:500]}
    if not error:
        fields |= {"status": DeliveryStatus.DELIVERED, "delivered_at": timezone.now()}
    elif final or attempts >= MAX_ATTEMPTS:
        fields |= {"status": DeliveryStatus.FAILED}
    else:
        fields |= {
            "next_attempt_at": timezone.now() + timedelta(seconds=retry_base_seconds() * 3 ** (attempts - 1))
        }
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    if error:
        logger.info("webhook delivery %s (attempt %d): %s", delivery.pk, attempts, error)
    return WebhookDelivery.objects.get(pk=delivery.pk)

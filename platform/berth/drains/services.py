"""Writes of log drains: add and remove an app's drains, and what the forwarder records of each delivery.

A drain starts at the end of the app's log as it is when added (the lines printed from then on are sent). The app's
capped Redis stream is the buffer: while a drain is down its lines wait there, and the forwarder resumes from the
drain's cursor; lines the cap trimmed before they were sent are counted as dropped (drain_lost_count)."""

import socket
import urllib.parse
import uuid

import redis
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from berth.apps.models import App
from berth.audit.services import audit_record
from berth.core.redis import redis_client
from berth.drains.models import Drain
from berth.drains.transport import DrainRefused, drain_address, drain_url_check
from berth.observe.services import logs_key

MAX_DRAINS_PER_APP = 5
ERROR_MAX = 500


def stream_position(app: str) -> tuple[str, int]:
    """(id of the newest entry, entries ever added) of the app's log stream; ("0-0", 0) if it has none."""
    try:
        info = redis_client().xinfo_stream(logs_key(app))
    except redis.ResponseError as exc:  # "no such key": no line yet
        if "no such key" not in str(exc).lower():
            raise
        return "0-0", 0
    last = info.get("last-generated-id") or b"0-0"
    return (last.decode() if isinstance(last, bytes) else last), int(info.get("entries-added") or 0)


def drain_url_refusal(url: str) -> str | None:
    """Why `url` cannot be a drain (checked when it is added: its host must resolve now); None if it can."""
    try:
        drain_address(drain_url_check(url))
    except DrainRefused as exc:
        return str(exc)
    except (socket.gaierror, UnicodeError) as exc:
        return f"{urllib.parse.urlsplit(url).hostname} does not resolve ({exc})"
    return None


def drain_add(*, app: App, url: str, actor=None, remote_addr: str | None = None) -> Drain:
    """Add a drain to `app`, forwarding the lines logged from now on. ValidationError (field `url`) otherwise."""
    url = (url or "").strip()
    if not url or len(url) > 2000:
        raise ValidationError({"url": "is required (at most 2000 characters)"})
    refusal = drain_url_refusal(url)
    if refusal:
        raise ValidationError({"url": refusal})
    cursor, added = stream_position(app.name)
    try:
        with transaction.atomic():
            App.objects.select_for_update().filter(pk=app.pk).first()  # two adds at once cannot pass the cap
            if Drain.objects.filter(app=app).count() >= MAX_DRAINS_PER_APP:
                raise ValidationError(
                    {"url": f"{app.name} has {MAX_DRAINS_PER_APP} drains, the most allowed"}
                )
            drain = Drain.objects.create(
                app=app,
                url=url,
                token=f"d.{uuid.uuid4()}",
                cursor=cursor,
                added_at_cursor=added,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                action="drain.add",
                actor=actor,
                team=app.team,
                target=f"app {app.name} drain #{drain.pk}",
                remote_addr=remote_addr,
                # scheme and host only: an HTTPS drain's path or query may hold its token
                data={"app": app.name, "scheme": urllib.parse.urlsplit(url).scheme, "host": drain_host(url)},
            )
    except IntegrityError:
        raise ValidationError({"url": f"{app.name} already drains to this URL"}) from None
    return drain


def drain_host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def drain_find(*, app: App, url_or_id: str) -> Drain:
    """The app's drain by its URL, id or token; Drain.DoesNotExist otherwise."""
    drains = Drain.objects.filter(app=app)
    if url_or_id.isdigit():
        return drains.get(pk=int(url_or_id))
    return drains.get(token=url_or_id) if url_or_id.startswith("d.") else drains.get(url=url_or_id)


def drain_remove(*, app: App, url_or_id: str, actor=None, remote_addr: str | None = None) -> Drain:
    """Remove an app's drain (by URL, id or token); Drain.DoesNotExist if it has none such. Returns it."""
    drain = drain_find(app=app, url_or_id=url_or_id)
    with transaction.atomic():
        audit_record(
            action="drain.remove",
            actor=actor,
            team=app.team,
            target=f"app {app.name} drain #{drain.pk}",
            remote_addr=remote_addr,
            data={
                "app": app.name,
                "scheme": urllib.parse.urlsplit(drain.url).scheme,
                "host": drain_host(drain.url),
            },
        )
        drain.delete()
    return drain


def drain_lost_record(*, drain: Drain, lost: int) -> None:
    """Count `lost` lines the stream's cap trimmed before they were delivered (the cursor stays: what follows
    it in the stream is what is left to send)."""
    Drain.objects.filter(pk=drain.pk).update(
        dropped=F("dropped") + lost, added_at_cursor=F("added_at_cursor") + lost
    )
    drain.dropped += lost
    drain.added_at_cursor += lost


def drain_stream_reset(*, drain: Drain) -> None:
    """The app's log stream was deleted and begun again (fewer entries ever added than the cursor had seen):
    the drain starts at its beginning."""
    Drain.objects.filter(pk=drain.pk).update(cursor="0-0", added_at_cursor=0)
    drain.cursor, drain.added_at_cursor = "0-0", 0


def drain_delivered_record(*, drain: Drain, cursor: str, count: int) -> None:
    """A batch of `count` lines up to stream id `cursor` was accepted by the drain."""
    now = timezone.now()
    Drain.objects.filter(pk=drain.pk).update(
        cursor=cursor,
        added_at_cursor=F("added_at_cursor") + count,
        delivered=F("delivered") + count,
        last_success_at=now,
    )
    drain.cursor = cursor
    drain.added_at_cursor += count
    drain.delivered += count
    drain.last_success_at = now


def drain_failure_record(*, drain: Drain, error: str) -> None:
    now = timezone.now()
    Drain.objects.filter(pk=drain.pk).update(last_error=error[:ERROR_MAX], last_error_at=now)
    drain.last_error, drain.last_error_at = error[:ERROR_MAX], now

"""Add-on backups: capture, restore, verify by restoring, schedules with retention, a final backup on destroy and
new add-ons made from a backup.

A capture streams pg_dump -Fc (PostgreSQL) or an RDB (Redis) from a container beside the add-on straight into the
backup store (berth.addons.store) with its size and sha256, and keeps the rows per table (keys per db) counted in
the same snapshot. A verification restores the backup into a throwaway server of the same image and compares what
it holds with those counts: a backup is only `verified` when a restore proved it. Every read of a backup checks its
checksum before anything is restored. A failed capture or verification is an event on each attached app and the
add-on's alarm (`backup_alarm`), never a silent success.
"""

import datetime as dt
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.addons.models import PLANS, Addon, AddonBackup, AddonBackupSchedule, BackupState
from berth.addons.selectors import addon_spec
from berth.addons.services import addon_create, addon_destroy
from berth.addons.store import CHUNK, BackupStoreError, backup_store
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.observe.services import event_record
from berth.runtime.addons import (
    JOB_READ_TIMEOUT_S,
    AddonDump,
    AddonRuntimeError,
    AddonSpec,
    addon_backup_restore,
    addon_backup_verify,
    addon_jobs_prune,
    addon_local_node,
    addon_node_describe,
    addon_node_resolve,
    addon_service_exists,
    addon_service_replace,
    addon_wait_ready,
)

RESTORE_TIMEOUT_S = 3 * 3600
VERIFY_TIMEOUT_S = 3 * 3600
DEFAULT_KEEP = 7
# a capture still `capturing` this long after it started lost its worker: no dump streams for longer
CAPTURE_STUCK_AFTER = dt.timedelta(seconds=JOB_READ_TIMEOUT_S + 600)
USABLE = (BackupState.CAPTURED, BackupState.VERIFIED)
BACKUP_NAME_RE = re.compile(r"b[0-9]{3,}")
SCHEDULE_AT_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(\s*UTC)?", re.IGNORECASE)
# what the app sees while a restore runs, said by the CLI and the API
RESTORE_EFFECT = (
    "the restore runs in one transaction: while it runs, the app's queries on the restored tables wait; "
    "at its commit they see the backup's data; if it fails, nothing changed"
)
REDIS_RESTORE_EFFECT = (
    "the Redis server was stopped while the backup was loaded beside its data: the app's connections were refused "
    "meanwhile; the backup's data replaced the old only once fully loaded, so a failure changed nothing"
)


def restore_effect(kind: str) -> str:
    """What the app sees while a restore of a `kind` add-on runs (said by the API and the CLI)."""
    return RESTORE_EFFECT if kind == "postgres" else REDIS_RESTORE_EFFECT


# --- reads ------------------------------------------------------------------------------------------------------


def backups_of(addon: Addon) -> QuerySet[AddonBackup]:
    """The backups of the add-on's name in its team, newest first (those of an earlier add-on of that name too)."""
    return AddonBackup.objects.filter(team=addon.team, addon_name=addon.name)


def backups_named(*, team: Team, addon_name: str) -> QuerySet[AddonBackup]:
    return AddonBackup.objects.filter(team=team, addon_name=addon_name)


def backup_of_team(*, team: Team, ref: str, addon_name: str | None = None) -> AddonBackup:
    """A team's backup by `b001` (of `addon_name`, or unique in the team) or `ADDON/b001`; 404 otherwise."""
    if "/" in ref:
        addon_name, _, ref = ref.partition("/")
    if not BACKUP_NAME_RE.fullmatch(ref or ""):
        raise Http404(f"no backup {ref!r} (backup ids look like b001)")
    found = AddonBackup.objects.filter(team=team, name=ref)
    if addon_name:
        found = found.filter(addon_name=addon_name)
    matches = list(found[:10])
    if not matches:
        raise Http404(f"no backup {ref}" + (f" of {addon_name}" if addon_name else ""))
    if len(matches) > 1:
        names = ", ".join(sorted(f"{b.addon_name}/{b.name}" for b in matches))
        raise ValidationError({"backup": f"{ref} names several backups ({names}); say which add-on's"})
    return matches[0]


def backup_alarm(addon: Addon) -> str | None:
    """What is wrong with the add-on's backups, None when the newest finished one is good: its capture or its
    verification failed."""
    newest = backups_of(addon).exclude(state=BackupState.CAPTURING).first()
    if newest is None or newest.state in USABLE:
        return None
    what = "capture" if newest.state == BackupState.FAILED else "verification"
    return f"backup {newest.name}'s {what} failed: {newest.error or 'no message'}"


def backup_schedule_of(addon: Addon) -> AddonBackupSchedule | None:
    return AddonBackupSchedule.objects.filter(addon=addon).first()


# --- the stored object -----------------------------------------------------------------------------------------


def backup_open(backup: AddonBackup) -> BinaryIO:
    """The backup's bytes as a binary stream from the store (close it after); its checksum is the reader's to
    check (backup.sha256), as `_checked` does."""
    if backup.state not in (*USABLE, BackupState.VERIFY_FAILED) or not backup.store_key:
        raise Conflict(f"backup {backup.name} has no data ({backup.state})")
    try:
        return backup_store().open(backup.store_key)
    except BackupStoreError as exc:
        raise Conflict(str(exc)) from exc


class _Checked:
    """The backup's chunks from the store, hashed as they pass; `check()` raises Conflict unless the whole object
    went by and matches its recorded size and sha256."""

    def __init__(self, backup: AddonBackup) -> None:
        self.backup = backup
        self.digest = hashlib.sha256()
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        stream = backup_open(self.backup)
        try:
            while chunk := stream.read(CHUNK):
                self.digest.update(chunk)
                self.size += len(chunk)
                # past its recorded size the archive would be refused anyway; stop reading early
                if self.size > (self.backup.size or 0):
                    break
                yield chunk
        finally:
            stream.close()

    def check(self) -> None:
        if self.size != self.backup.size or self.digest.hexdigest() != self.backup.sha256:
            raise Conflict(
                f"backup {self.backup.name} does not match its checksum (sha256 {self.backup.sha256[:12]}…, "
                f"{self.backup.size} bytes): the stored object is damaged"
            )


def _feed(checked: _Checked, size: int) -> Iterator[bytes]:
    """The checked chunks, padded or cut to `size` so that a damaged object still makes a well-formed archive
    and is refused by its checksum, with a clear message, rather than by the engine."""
    sent = 0
    for chunk in checked.chunks():
        chunk = chunk[: size - sent]
        sent += len(chunk)
        if chunk:
            yield chunk
    while sent < size:
        pad = min(CHUNK, size - sent)
        sent += pad
        yield b"\0" * pad


# --- capture ---------------------------------------------------------------------------------------------------


def _announce(addon: Addon | None, *, kind: str, message: str) -> None:
    """An event on each app the add-on is attached to (the apps' event streams are where Berth reports)."""
    if addon is None:
        return
    for attachment in addon.attachments.select_related("app"):
        event_record(app=attachment.app.name, kind=kind, message=message)


def _next_name(team: Team, addon_name: str) -> str:
    numbers = [
        int(n[1:])
        for n in AddonBackup.objects.filter(team=team, addon_name=addon_name).values_list("name", flat=True)
        if BACKUP_NAME_RE.fullmatch(n)
    ]
    return f"b{max(numbers, default=0) + 1:03d}"


def _backup_row(addon: Addon, trigger: str) -> AddonBackup:
    for _ in range(10):
        try:
            with transaction.atomic():
                return AddonBackup.objects.create(
                    team=addon.team,
                    addon=addon,
                    addon_name=addon.name,
                    kind=addon.kind,
                    name=_next_name(addon.team, addon.name),
                    trigger=trigger,
                )
        except IntegrityError:
            continue  # another capture took that number meanwhile
    raise Conflict(f"could not number a new backup of {addon.name}; try again")


def _capture_counts(kind: str, counts: dict[str, int]) -> dict:
    if kind == "postgres":
        return counts
    # Redis: keys per db read just before and just after the RDB; the backup holds a count between them
    dbs = {name.split(" ", 1)[1] for name in counts if " " in name}
    return {db: sorted([counts.get(f"before {db}", 0), counts.get(f"after {db}", 0)]) for db in sorted(dbs)}


def backup_capture(
    *, addon: Addon, actor, remote_addr: str | None = None, trigger: str = "manual"
) -> AddonBackup:
    """Take a backup of the add-on now, streamed into the store. Returns the backup, `captured` or `failed` (with
    its error; a failure is also an event on the attached apps). Works since piece 2 of issue 14."""
    backup = _backup_row(addon, trigger)
    suffix = "dump" if addon.kind == "postgres" else "rdb"
    key = f"{addon.team.name}/{addon.name}/{backup.name}-{secrets.token_hex(4)}.{suffix}"
    store = backup_store()
    spec = addon_spec(addon)
    dump = AddonDump(spec)
    try:
        if not addon_service_exists(spec):
            raise AddonRuntimeError(f"add-on {addon.name} has no server to back up")
        stored = store.put(key, dump.chunks())
    except (AddonRuntimeError, BackupStoreError) as exc:
        try:
            store.delete(key)
        except BackupStoreError:
            pass  # the row says failed; an orphaned partial object is harmless
        backup.state = BackupState.FAILED
        backup.error = str(exc)[:2000]
        backup.counts = _capture_counts(addon.kind, dump.result.counts) if dump.result else {}
    else:
        backup.state = BackupState.CAPTURED
        backup.store_key = key
        backup.size = stored.size
        backup.sha256 = stored.sha256
        backup.counts = _capture_counts(addon.kind, dump.result.counts if dump.result else {})
    backup.finished_at = timezone.now()
    backup.save()
    audit_record(
        action="addon.backup.capture",
        actor=actor,
        team=addon.team,
        target=f"{addon.name}/{backup.name}",
        remote_addr=remote_addr,
        data={"state": backup.state, "size": backup.size, "trigger": trigger},
    )
    if backup.state == BackupState.FAILED:
        _announce(addon, kind="addon.backup.failed", message=f"backup {backup.name} of {addon.name} failed")
    else:
        _announce(
            addon,
            kind="addon.backup.captured",
            message=f"backup {backup.name} of {addon.name}: {backup.size} bytes",
        )
    return backup


# --- verify ----------------------------------------------------------------------------------------------------


def _compare(kind: str, captured: dict, restored: dict[str, int]) -> list[str]:
    """What differs between the counts at capture and those of the restore, one phrase each."""
    differences = []
    for name in sorted(set(captured) | set(restored)):
        want = captured.get(name, 0 if kind == "postgres" else [0, 0])
        got = restored.get(name, 0)
        if isinstance(want, list):
            if not want[0] <= got <= want[1]:
                span = str(want[0]) if want[0] == want[1] else f"{want[0]}-{want[1]}"
                differences.append(f"{name}: {got} keys, {span} at capture")
        elif got != want:
            differences.append(f"{name}: {got} rows, {want} at capture")
    return differences


def _spec_of_backup(backup: AddonBackup) -> AddonSpec:
    # the add-on may be gone; the throwaway server needs only its kind and a name for its container
    return AddonSpec(
        team=backup.team.name, name=backup.addon_name, kind=backup.kind, password="", memory_mb=PLANS["small"]
    )


def backup_verify(backup: AddonBackup) -> AddonBackup:
    """Restore the backup into a throwaway server of the add-on's image and compare rows per table (keys per db)
    with the counts taken at capture: `verified`, or `verify_failed` with what differed (an event and the add-on's
    alarm). A damaged object (checksum) fails too. Works since piece 4 of issue 14."""
    backup.refresh_from_db()
    if backup.state not in (*USABLE, BackupState.VERIFY_FAILED):
        raise Conflict(f"backup {backup.name} cannot be verified: it is {backup.state}")
    checked = _Checked(backup)
    error = ""
    restored: dict[str, int] = {}
    try:
        result = addon_backup_verify(
            _spec_of_backup(backup),
            size=backup.size,
            chunks=_feed(checked, backup.size),
            check=checked.check,
            timeout=VERIFY_TIMEOUT_S,
        )
    except (Conflict, AddonRuntimeError) as exc:
        error = str(exc)
    else:
        restored = result.counts
        if result.exit_code != 0:
            lines = [line for line in result.output.splitlines() if line.strip()][-5:]
            error = f"the backup did not restore (exit {result.exit_code}): " + " / ".join(lines)
        else:
            differences = _compare(backup.kind, backup.counts, restored)
            if differences:
                error = "the restore does not hold what was captured: " + "; ".join(differences[:10])
    state = BackupState.VERIFY_FAILED if error else BackupState.VERIFIED
    AddonBackup.objects.filter(pk=backup.pk, state__in=(*USABLE, BackupState.VERIFY_FAILED)).update(
        state=state, verify_counts=restored, verified_at=timezone.now(), error=error[:2000]
    )
    backup.refresh_from_db()
    audit_record(
        action="addon.backup.verify",
        actor=None,
        team=backup.team,
        target=f"{backup.addon_name}/{backup.name}",
        data={"state": backup.state},
    )
    if error:
        _announce(
            backup.addon,
            kind="addon.backup.verify_failed",
            message=f"backup {backup.name} of {backup.addon_name} failed its verification: {error[:300]}",
        )
    return backup


# --- restore ---------------------------------------------------------------------------------------------------


def backup_restore(*, backup: AddonBackup, addon: Addon, actor, remote_addr: str | None = None) -> float:
    """Restore `backup` into `addon`, all or nothing: its checksum is checked before anything runs; PostgreSQL's
    pg_restore runs in one transaction, Redis' server stops while the RDB is loaded beside its data and swapped in
    (restore_effect says what the app sees). Returns the seconds taken. Works since piece 3 of issue 14."""
    if backup.team_id != addon.team_id:
        raise Http404(f"no backup {backup.name}")
    if backup.kind != addon.kind:
        raise ValidationError(
            {"backup": f"{backup.name} is a {backup.kind} backup; {addon.name} is {addon.kind}"}
        )
    if backup.state == BackupState.VERIFY_FAILED:
        raise Conflict(f"backup {backup.name} failed its verification ({backup.error}); restore another one")
    if backup.state not in USABLE:
        raise Conflict(f"backup {backup.name} has no data ({backup.state})")
    checked = _Checked(backup)
    started = time.monotonic()
    try:
        result = addon_backup_restore(
            addon_spec(addon),
            size=backup.size,
            chunks=_feed(checked, backup.size),
            check=checked.check,
            timeout=RESTORE_TIMEOUT_S,
        )
    except AddonRuntimeError as exc:
        raise Conflict(
            f"could not restore {backup.name} into {addon.name}: {exc}; the data is as it was"
        ) from exc
    if result.exit_code != 0:
        lines = [line for line in result.output.splitlines() if line.strip()][-5:]
        raise Conflict(
            f"the restore of {backup.name} into {addon.name} failed and was rolled back, the data is as it was: "
            + " / ".join(lines)
        )
    seconds = time.monotonic() - started
    audit_record(
        action="addon.backup.restore",
        actor=actor,
        team=addon.team,
        target=f"{addon.name}/{backup.name}",
        remote_addr=remote_addr,
        data={"backup_of": backup.addon_name, "seconds": round(seconds, 1)},
    )
    _announce(addon, kind="addon.backup.restored", message=f"{addon.name} restored from backup {backup.name}")
    return seconds


# --- schedules and retention -----------------------------------------------------------------------------------


def _parse_at(at: str) -> dt.time:
    match = SCHEDULE_AT_RE.fullmatch((at or "").strip()) if isinstance(at, str) else None
    if match is None:
        raise ValidationError({"at": "use HH:MM in UTC, e.g. '02:00 UTC'"})
    return dt.time(int(match.group(1)), int(match.group(2)))


def backup_schedule_set(
    *, addon: Addon, at: str, keep: int = DEFAULT_KEEP, actor, remote_addr: str | None = None
) -> AddonBackupSchedule:
    """Back the add-on up every day at `at` (HH:MM UTC), verify each, keep the newest `keep` scheduled ones."""
    when = _parse_at(at)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= 365:
        raise ValidationError({"keep": "a number of backups from 1 to 365"})
    schedule, _ = AddonBackupSchedule.objects.update_or_create(
        addon=addon, defaults={"at": when, "keep": keep}
    )
    audit_record(
        action="addon.backup.schedule",
        actor=actor,
        team=addon.team,
        target=addon.name,
        remote_addr=remote_addr,
        data={"at": f"{when:%H:%M} UTC", "keep": keep},
    )
    return schedule


def backup_schedule_remove(*, addon: Addon, actor, remote_addr: str | None = None) -> None:
    deleted, _ = AddonBackupSchedule.objects.filter(addon=addon).delete()
    if not deleted:
        raise ValidationError({"schedule": f"{addon.name} has no backup schedule"})
    audit_record(
        action="addon.backup.unschedule",
        actor=actor,
        team=addon.team,
        target=addon.name,
        remote_addr=remote_addr,
    )


def backup_schedules_due(now: dt.datetime | None = None) -> list[int]:
    """Ids of the add-ons whose daily backup time has passed today (UTC) and that have not had it yet."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    due = AddonBackupSchedule.objects.filter(at__lte=now.time()).exclude(last_run_on=now.date())
    return list(due.values_list("addon_id", flat=True))


def backup_run_scheduled(*, addon_id: int, now: dt.datetime | None = None) -> AddonBackup | None:
    """The scheduled backup of one add-on: claim today's run (once, however often this is called), capture,
    verify, prune. None when it is not due or another worker has it."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    today = now.date()
    claimed = (
        AddonBackupSchedule.objects.filter(addon_id=addon_id, at__lte=now.time())
        .exclude(last_run_on=today)
        .update(last_run_on=today)
    )
    if claimed != 1:
        return None
    schedule = AddonBackupSchedule.objects.select_related("addon__team").get(addon_id=addon_id)
    backup = backup_capture(addon=schedule.addon, actor=None, trigger="scheduled")
    if backup.state == BackupState.CAPTURED:
        backup = backup_verify(backup)
    backup_prune(addon=schedule.addon, keep=schedule.keep)
    return backup


def backups_sweep(now: dt.datetime | None = None) -> int:
    """A capture whose worker was killed stays `capturing`: past CAPTURE_STUCK_AFTER it is failed (so the alarm
    shows it), and backup containers older than that are removed. Returns the captures failed."""
    now = now or timezone.now()
    stuck = AddonBackup.objects.filter(state=BackupState.CAPTURING, started_at__lt=now - CAPTURE_STUCK_AFTER)
    failed = stuck.update(
        state=BackupState.FAILED, finished_at=now, error="the capture stopped: the worker taking it ended"
    )
    addon_jobs_prune(older_than=CAPTURE_STUCK_AFTER.total_seconds())
    return failed


def backup_delete(backup: AddonBackup) -> None:
    """The backup's object leaves the store, then its row."""
    if backup.store_key:
        backup_store().delete(backup.store_key)
    backup.delete()


def backup_delete_by(*, backup: AddonBackup, actor, remote_addr: str | None = None) -> None:
    """A person deletes a backup (its data leaves the store): audited."""
    team, target = backup.team, f"{backup.addon_name}/{backup.name}"
    try:
        backup_delete(backup)
    except BackupStoreError as exc:
        raise Conflict(str(exc)) from exc
    audit_record(action="addon.backup.delete", actor=actor, team=team, target=target, remote_addr=remote_addr)


def backup_prune(*, addon: Addon, keep: int) -> list[str]:
    """Keep the newest `keep` good scheduled backups; older scheduled ones (and failed ones older than the oldest
    kept) go. Manual and final backups stay. Returns the names deleted."""
    scheduled = list(backups_of(addon).filter(trigger="scheduled").exclude(state=BackupState.CAPTURING))
    good = [b for b in scheduled if b.state in USABLE]
    if len(good) <= keep:
        return []
    oldest_kept = good[keep - 1]
    doomed = [b for b in scheduled if b.started_at < oldest_kept.started_at and b.pk != oldest_kept.pk]
    for backup in doomed:
        backup_delete(backup)
    return [b.name for b in doomed]


# --- add-ons made from a backup, and a last backup before a destroy --------------------------------------------


def addon_create_from_backup(
    *,
    app: App,
    backup: AddonBackup,
    plan: str = "small",
    name: str | None = None,
    as_name: str | None = None,
    actor,
    remote_addr: str | None = None,
) -> Addon:
    """A new add-on with the backup's data (a copy): provisioned and attached as addon_create does, then the backup
    restored into it; if the restore fails the new add-on is destroyed again, nothing half-made stays."""
    if backup.team_id != app.team_id:
        raise Http404(f"no backup {backup.name}")
    if backup.state not in USABLE:
        raise Conflict(f"backup {backup.name} cannot be restored: it is {backup.state}")
    addon = addon_create(
        app=app, kind=backup.kind, plan=plan, name=name, as_name=as_name, actor=actor, remote_addr=remote_addr
    )
    try:
        backup_restore(backup=backup, addon=addon, actor=actor, remote_addr=remote_addr)
    except Exception:
        addon_destroy(addon=addon, actor=actor, remote_addr=remote_addr)
        raise
    return addon


def addon_destroy_with_backup(*, addon: Addon, actor, remote_addr: str | None = None) -> AddonBackup:
    """Take a final backup, then destroy the add-on; the backup stays (its add-on becomes NULL). A failed final
    backup stops the destroy: the add-on and its data stay."""
    backup = backup_capture(addon=addon, actor=actor, remote_addr=remote_addr, trigger="final")
    if backup.state != BackupState.CAPTURED:
        raise Conflict(
            f"the final backup of {addon.name} failed ({backup.error}); nothing was destroyed "
            "(destroy without a backup with --no-backup)"
        )
    addon_destroy(addon=addon, actor=actor, remote_addr=remote_addr)
    backup.refresh_from_db()
    return backup


# --- a lost node's add-on, back on another node from its last backup ------------------------------------------


@dataclass(frozen=True)
class Recovery:
    backup: AddonBackup
    old_node: str  # hostname (or id) of the node the add-on was pinned to
    new_node: str
    seconds: float


def recovery_backup(addon: Addon) -> AddonBackup:
    """The backup a recovery starts from: the newest verified one, else the newest captured (not yet verified)."""
    for state in (BackupState.VERIFIED, BackupState.CAPTURED):
        backup = backups_of(addon).filter(state=state).order_by("-started_at").first()
        if backup is not None:
            return backup
    raise Conflict(f"{addon.name} has no usable backup to recover from")


def addon_recover(
    *,
    addon: Addon,
    backup: AddonBackup | None = None,
    node: str | None = None,
    actor,
    remote_addr: str | None = None,
) -> Recovery:
    """Bring back an add-on whose node is lost (down, drained or gone from the swarm): its service is replaced by one
    pinned to `node` (default: the node Berth runs on) with an empty volume, and `backup` (default: the newest
    verified) is restored into it. Its host name and password stay, so the apps' URLs are unchanged and no release
    is made; they reconnect once it answers. Refused while its node is ready and active (its data is there: restore
    a backup into it instead). If the new server cannot be made or the restore fails, the service is pinned back
    to the old node (whose volume was never touched) and nothing else changed."""
    started = time.monotonic()
    old_node_id = addon.node
    old_host, unavailable = addon_node_describe(old_node_id) if old_node_id else ("", "unknown")
    if unavailable is None:
        raise Conflict(
            f"{addon.name}'s node {old_host} is ready and active: its data is there. To bring back a backup's "
            "data, restore it into the add-on (pg:backups:restore / redis:backups:restore)"
        )
    backup = backup or recovery_backup(addon)
    if backup.team_id != addon.team_id:
        raise Http404(f"no backup {backup.name}")
    if backup.kind != addon.kind:
        raise ValidationError(
            {"backup": f"{backup.name} is a {backup.kind} backup; {addon.name} is {addon.kind}"}
        )
    if backup.state not in USABLE:
        raise Conflict(f"backup {backup.name} cannot be restored: it is {backup.state}")
    try:
        new_node_id = addon_node_resolve(node) if node else addon_local_node()
    except AddonRuntimeError as exc:
        raise ValidationError({"node": str(exc)}) from exc
    if new_node_id == old_node_id:
        raise ValidationError({"node": f"{addon.name} is already pinned to {old_host}; choose another node"})
    spec = addon_spec(addon)
    try:
        addon_service_replace(spec, node_id=new_node_id)
        addon_wait_ready(spec)
    except AddonRuntimeError as exc:
        _pin_back(spec, old_node_id)
        raise Conflict(
            f"could not start {addon.name} on the new node: {exc}; it stays pinned to {old_host}"
        ) from exc
    try:
        backup_restore(backup=backup, addon=addon, actor=actor, remote_addr=remote_addr)
    except Exception:
        _pin_back(spec, old_node_id)
        raise
    Addon.objects.filter(pk=addon.pk).update(node=new_node_id)
    addon.node = new_node_id
    new_host, _ = addon_node_describe(new_node_id)
    seconds = time.monotonic() - started
    audit_record(
        action="addon.recover",
        actor=actor,
        team=addon.team,
        target=addon.name,
        remote_addr=remote_addr,
        data={
            "backup": backup.name,
            "from_node": old_host,
            "to_node": new_host,
            "seconds": round(seconds, 1),
        },
    )
    _announce(
        addon,
        kind="addon.recovered",
        message=f"{addon.name} recovered on {new_host} from backup {backup.name} ({old_host} was {unavailable})",
    )
    return Recovery(backup=backup, old_node=old_host, new_node=new_host, seconds=seconds)


def _pin_back(spec: AddonSpec, old_node_id: str) -> None:
    """Undo a recovery that did not finish: the service goes back to the old node, where its volume still is."""
    try:
        addon_service_replace(spec, node_id=old_node_id, keep_local_volume=False)
    except AddonRuntimeError:
        pass  # said by the caller's error; the add-on's row still names the old node

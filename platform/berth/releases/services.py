"""Writes for releases: creation (numbered safely under concurrency) and status transitions (conditional UPDATE)."""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from berth.apps.crypto import encrypt_json, encrypt_text, reencrypt
from berth.apps.models import App, ConfigVar, Formation
from berth.apps.services import app_row_lock
from berth.apps.validators import validate_config_key, validate_config_value, validate_process_name
from berth.audit.services import audit_record
from berth.builds.procfile import RELEASE_PROCESS
from berth.releases.models import Release, ReleaseStatus
from berth.releases.selectors import latest_release
from berth.releases.signals import release_created

_CREATE_ATTEMPTS = 5


def _validate_procfile(procfile) -> dict[str, str]:
    if procfile is None:
        return {}
    if not isinstance(procfile, dict):
        raise ValidationError({"procfile": "must be a mapping of process type to command"})
    for process, command in procfile.items():
        validate_process_name(process)
        if not isinstance(command, str) or not command.strip():
            raise ValidationError({"procfile": f"the command of {process} must be a non-empty string"})
    return dict(procfile)


def release_create(
    *,
    app: App,
    image: str,
    procfile: dict,
    description: str,
    actor,
    status: str = "pending",
    config: dict[str, str] | None = None,
    healthchecks: dict | None = None,
) -> Release:
    """Make the next release (v1, v2…) of `app` from an image, a procfile and the app's current config vars.

    Numbering is safe under concurrency: the app is locked (apps.services.app_row_lock) while the next number is
    taken, and a clash that still happens is retried. New process types get a formation row (web 1, others 0).
    `config` (a rollback's: the old release's vars) replaces the snapshot of the app's current config vars.
    `healthchecks` (a build's app.json startup checks, a rollback's: the old release's) by default are the latest
    release's, so a config change keeps checking as the build asked.
    """
    if status not in ReleaseStatus.values:
        raise ValidationError({"status": f"must be one of {', '.join(ReleaseStatus.values)}"})
    procfile = _validate_procfile(procfile)
    image = image or ""
    last_error: IntegrityError | None = None
    for _ in range(_CREATE_ATTEMPTS):
        try:
            with transaction.atomic():
                app_row_lock(app=app)
                last = (
                    Release.objects.filter(app=app)
                    .order_by("-version")
                    .values_list("version", flat=True)
                    .first()
                )
                # A rollback passes the old release's config; everything else snapshots the app's.
                if config is None:
                    config = {var.key: var.value for var in ConfigVar.objects.filter(app=app)}
                if healthchecks is None:
                    healthchecks = (
                        Release.objects.filter(app=app, version=last)
                        .values_list("healthchecks", flat=True)
                        .first()
                        or {}
                    )
                release = Release.objects.create(
                    app=app,
                    version=(last or 0) + 1,
                    image=image,
                    config_encrypted=encrypt_json(config),
                    procfile=procfile,
                    healthchecks=healthchecks,
                    description=(description or "")[:500],
                    created_by=actor if getattr(actor, "is_authenticated", False) else None,
                    status=status,
                    status_changed_at=timezone.now(),
                )
                known = set(Formation.objects.filter(app=app).values_list("process", flat=True))
                Formation.objects.bulk_create(
                    [
                        Formation(app=app, process=process, replicas=1 if process == "web" else 0)
                        for process in procfile
                        if process not in known and process != RELEASE_PROCESS  # a phase, not a process type
                    ]
                )
                audit_record(
                    action="release.create",
                    actor=actor,
                    team=app.team,
                    target=f"{app.name} v{release.version}",
                    data={"app": app.name, "version": release.version, "description": release.description},
                )
                transaction.on_commit(lambda r=release: release_created.send(sender=Release, release=r))
            return release
        except IntegrityError as exc:
            last_error = exc
    raise last_error


def release_set_status(
    *, release: Release, from_statuses: Iterable[str], to_status: str, reason: str = ""
) -> bool:
    """Move a release to `to_status` only if it is still in one of `from_statuses`.

    Returns False when another worker moved it first (the row is untouched then). Updates `release` in place.
    """
    if to_status not in ReleaseStatus.values:
        raise ValueError(f"unknown release status {to_status!r}")
    now = timezone.now()
    updated = Release.objects.filter(pk=release.pk, status__in=list(from_statuses)).update(
        status=to_status, status_reason=reason, status_changed_at=now
    )
    if updated != 1:
        return False
    release.status, release.status_reason, release.status_changed_at = to_status, reason, now
    return True


class ImagePruned(Exception):
    """The release's image was garbage-collected (older than the kept releases): it cannot run again."""


def release_image_available(release: Release) -> None:
    """Raise ImagePruned when the release's image was deleted by the image GC (so a rollback to it is refused
    before anything changes); return quietly otherwise."""
    pruned = Release.objects.filter(pk=release.pk).values_list("image_pruned_at", flat=True).first()
    if pruned is not None:
        raise ImagePruned(
            f"the image of v{release.version} was removed on {pruned:%Y-%m-%d %H:%M} UTC (only the last "
            f"BERTH_IMAGE_RETENTION_RELEASES releases keep their image); roll back to a newer release, or "
            "push that commit again"
        )


def releases_mark_image_pruned(*, releases: Iterable[Release]) -> int:
    """Record that these releases' images are being deleted: from now on a rollback to them is refused."""
    return Release.objects.filter(pk__in=[r.pk for r in releases], image_pruned_at__isnull=True).update(
        image_pruned_at=timezone.now()
    )


def _config_description(set_keys: list[str], unset_keys: list[str]) -> str:
    parts = []
    if set_keys:
        parts.append(f"Set {', '.join(set_keys)} config vars")
    if unset_keys:
        parts.append(f"Unset {', '.join(unset_keys)}")
    return "; ".join(parts)


def config_update(*, app: App, changes: dict[str, str | None], actor, remote_addr: str | None = None):
    """Set (str) and unset (None) config vars, then make a new release with the latest image and procfile.

    Returns the new Release, or None when nothing changed (unsetting keys that are not set). All or nothing.
    """
    if not isinstance(changes, dict) or not changes:
        raise ValidationError({"config": 'send an object of {"KEY": "value"} (null unsets a key)'})
    for key, value in changes.items():
        validate_config_key(key)
        if value is not None:
            validate_config_value(key, value)
    with transaction.atomic():
        # Lock the app first so concurrent config changes apply one after another (each its own release).
        app_row_lock(app=app)
        existing = set(ConfigVar.objects.filter(app=app).values_list("key", flat=True))
        set_keys = sorted(k for k, v in changes.items() if v is not None)
        unset_keys = sorted(k for k, v in changes.items() if v is None and k in existing)
        if not set_keys and not unset_keys:
            return None
        for key in set_keys:
            ConfigVar.objects.update_or_create(
                app=app, key=key, defaults={"value_encrypted": encrypt_text(changes[key])}
            )
        ConfigVar.objects.filter(app=app, key__in=unset_keys).delete()
        audit_record(
            action="config.update",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            # names only, never values; "added" are the set keys that were not set before
            data={"set": set_keys, "unset": unset_keys, "added": sorted(set(set_keys) - existing)},
        )
        previous = latest_release(app)
        image = previous.image if previous else ""
        return release_create(
            app=app,
            image=image,
            procfile=previous.procfile if previous else {},
            description=_config_description(set_keys, unset_keys),
            actor=actor,
            # `pending`: deploys roll out a pending release that has an image when it is created (their
            # receiver of release_created); builds make `built` ones and deploy those themselves.
            status="pending",
        )


def config_reencrypt_all(*, batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every stored config value and release snapshot with the current (first) key."""
    counts = {"config_vars": 0, "releases": 0}
    with transaction.atomic():
        for var in ConfigVar.objects.select_for_update().only("pk", "value_encrypted").iterator(batch_size):
            ConfigVar.objects.filter(pk=var.pk).update(value_encrypted=reencrypt(var.value_encrypted))
            counts["config_vars"] += 1
        # Releases are immutable except for this: the snapshot's clear content does not change, only its key.
        releases = (
            Release.objects.select_for_update().exclude(config_encrypted="").only("pk", "config_encrypted")
        )
        for release in releases.iterator(batch_size):
            Release.objects.filter(pk=release.pk).update(config_encrypted=reencrypt(release.config_encrypted))
            counts["releases"] += 1
        audit_record(action="config.rotate_key", actor=None, data=counts)
    return counts

"""API v1 for add-ons: a team's PostgreSQL and Redis servers, attached to its apps through config vars.

Every route is about the app in its path; the add-on is looked up in that app's team, so another team's add-on is
a 404 like another team's app.
"""

from asgiref.sync import sync_to_async
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers as s
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts.errors import Conflict
from berth.addons import backups, selectors, services
from berth.addons.models import KINDS, PLANS, Addon, AddonBackup, AddonBackupSchedule, BackupState
from berth.addons.store import CHUNK
from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip, str_field

AddonAttachmentShape = S._shape("AddonAttachment", app=s.CharField(), config_var=s.CharField())
AddonShape = S._shape(
    "Addon",
    name=s.CharField(),
    kind=s.ChoiceField(choices=list(KINDS)),
    plan=s.CharField(),
    team=s.CharField(),
    created_at=s.DateTimeField(),
    attachments=AddonAttachmentShape(many=True),
)
AddonBackupScheduleShape = S._shape(
    "AddonBackupSchedule",
    at=s.CharField(help_text="HH:MM UTC"),
    keep=s.IntegerField(),
    last_run_on=s.DateField(allow_null=True),
)
AddonInfoShape = S._shape(
    "AddonInfo",
    base=AddonShape,
    version=s.CharField(allow_null=True),
    running=s.BooleanField(),
    size_bytes=s.IntegerField(allow_null=True),
    connections=s.IntegerField(allow_null=True),
    node=s.CharField(allow_null=True),
    backup_alarm=s.CharField(allow_null=True, help_text="the newest backup's failed capture or verification"),
    backup_schedule=AddonBackupScheduleShape(allow_null=True),
)
AddonCreateShape = S._shape(
    "AddonCreate",
    kind=s.ChoiceField(choices=list(KINDS)),
    plan=s.ChoiceField(choices=list(PLANS), required=False),
    name=s.CharField(required=False),
    from_backup=s.CharField(required=False, help_text="a copy of this backup (b001 or ADDON/b001)"),
    node=s.CharField(
        required=False, help_text="the Swarm node (hostname or id) to pin it to; default Berth's"
    ),
    **{"as": s.CharField(required=False, help_text="the config var is <AS>_URL")},
)
AddonRecoverShape = S._shape(
    "AddonRecover",
    confirm=s.CharField(help_text="the add-on's name again"),
    backup=s.CharField(required=False, help_text="default: the newest verified backup"),
    node=s.CharField(required=False, help_text="default: the node Berth runs on"),
)
AddonRecoveredShape = S._shape(
    "AddonRecovered",
    name=s.CharField(),
    backup=s.CharField(),
    old_node=s.CharField(),
    new_node=s.CharField(),
    seconds=s.FloatField(),
)
AddonAttachShape = S._shape(
    "AddonAttach", **{"as": s.CharField(required=False, help_text="the config var is <AS>_URL")}
)
AddonRunShape = S._shape("AddonRunRequest", args=s.ListField(child=s.CharField(allow_blank=True)))
AddonRunResultShape = S._shape(
    "AddonRunResult",
    exit_code=s.IntegerField(allow_null=True),
    output=s.CharField(allow_blank=True),
    timed_out=s.BooleanField(),
    seconds=s.FloatField(),
)
AddonRotatedShape = S._shape("AddonRotated", name=s.CharField(), seconds=s.FloatField())


def addon_repr(addon: Addon) -> dict:
    return {
        "name": addon.name,
        "kind": addon.kind,
        "plan": addon.plan,
        "team": addon.team.name,
        "created_at": addon.created_at,
        "attachments": [{"app": a.app.name, "config_var": a.config_var} for a in addon.attachments.all()],
    }


class AppAddonsView(AppScopedView):
    @extend_schema(
        responses=AddonShape(many=True),
        parameters=[OpenApiParameter("all", bool, description="the team's add-ons, not only this app's")],
    )
    def get(self, request, app: str):
        if request.query_params.get("all") in ("1", "true"):
            addons = selectors.addons_for_team(team=self.app.team)
        else:
            addons = selectors.addons_for_app(app=self.app)
        return Response([addon_repr(a) for a in addons])

    @extend_schema(request=AddonCreateShape, responses={201: AddonShape, 400: S.Error, 409: S.Error})
    def post(self, request, app: str):
        data = body(request)
        kind = str_field(data, "kind")
        from_backup = str_field(data, "from_backup", required=False)
        common = {
            "app": self.app,
            "plan": str_field(data, "plan", required=False) or "small",
            "name": str_field(data, "name", required=False),
            "as_name": str_field(data, "as", required=False),
            "actor": request.user,
            "remote_addr": client_ip(request),
        }
        node = str_field(data, "node", required=False)
        if from_backup is None:
            addon = services.addon_create(kind=kind, node=node, **common)
        elif node:
            raise ValidationError({"node": "a copy from a backup is made on Berth's node; leave out node"})
        else:
            backup = backups.backup_of_team(team=self.app.team, ref=from_backup)
            if backup.kind != kind:
                raise ValidationError({"from_backup": f"{from_backup} is a {backup.kind} backup, not {kind}"})
            addon = backups.addon_create_from_backup(backup=backup, **common)
        addon = selectors.addon_of_team(team=self.app.team, name=addon.name)
        return Response(addon_repr(addon), status=status.HTTP_201_CREATED)


class AppAddonScopedView(AppScopedView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.addon = selectors.addon_of_team(team=self.app.team, name=self.kwargs["addon"])


class AppAddonView(AppAddonScopedView):
    @extend_schema(responses={200: AddonInfoShape, 404: S.Error})
    def get(self, request, app: str, addon: str):
        schedule = backups.backup_schedule_of(self.addon)
        return Response(
            {
                **addon_repr(self.addon),
                **selectors.addon_status(addon=self.addon),
                "backup_alarm": backups.backup_alarm(self.addon),
                "backup_schedule": schedule_repr(schedule) if schedule else None,
            }
        )

    @extend_schema(
        responses={204: S.NoContent, 409: S.Error},
        parameters=[
            OpenApiParameter(
                "backup", bool, description="take a final backup first (default true; false: none)"
            )
        ],
        description="Take a final backup (unless backup=false), detach the add-on from every app, then remove its "
        "server and its volume. The final backup stays; a failed one stops the destroy.",
    )
    def delete(self, request, app: str, addon: str):
        if request.query_params.get("backup", "true") in ("0", "false", "no"):
            services.addon_destroy(addon=self.addon, actor=request.user, remote_addr=client_ip(request))
        else:
            backups.addon_destroy_with_backup(
                addon=self.addon, actor=request.user, remote_addr=client_ip(request)
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppAddonRecoverView(AppAddonScopedView):
    @extend_schema(
        request=AddonRecoverShape,
        responses={200: AddonRecoveredShape, 400: S.Error, 404: S.Error, 409: S.Error},
        description="Bring back an add-on whose node is lost (down, drained or gone): a new server pinned to `node` "
        "(default: Berth's), restored from `backup` (default: the newest verified). Its URL and password stay, so "
        "attached apps need no release; refused while its node is ready and active.",
    )
    def post(self, request, app: str, addon: str):
        data = body(request)
        if str_field(data, "confirm") != self.addon.name:
            raise ValidationError(
                {"confirm": f"this replaces {self.addon.name}'s server; confirm with its name"}
            )
        ref = str_field(data, "backup", required=False)
        backup = (
            backups.backup_of_team(team=self.app.team, ref=ref, addon_name=self.addon.name) if ref else None
        )
        recovery = backups.addon_recover(
            addon=self.addon,
            backup=backup,
            node=str_field(data, "node", required=False),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(
            {
                "name": self.addon.name,
                "backup": recovery.backup.name,
                "old_node": recovery.old_node,
                "new_node": recovery.new_node,
                "seconds": round(recovery.seconds, 1),
            }
        )


class AppAddonAttachmentView(AppAddonScopedView):
    @extend_schema(request=AddonAttachShape, responses={201: AddonShape, 400: S.Error, 409: S.Error})
    def post(self, request, app: str, addon: str):
        services.addon_attach(
            addon=self.addon,
            app=self.app,
            as_name=str_field(body(request), "as", required=False),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        # read again: the attachments were prefetched before this one was made
        addon = selectors.addon_of_team(team=self.app.team, name=self.addon.name)
        return Response(addon_repr(addon), status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: S.NoContent, 400: S.Error})
    def delete(self, request, app: str, addon: str):
        services.addon_detach(
            addon=self.addon, app=self.app, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppAddonRotateView(AppAddonScopedView):
    @extend_schema(request=None, responses={200: AddonRotatedShape, 409: S.Error})
    def post(self, request, app: str, addon: str):
        seconds = services.addon_credentials_rotate(
            addon=self.addon, actor=request.user, remote_addr=client_ip(request)
        )
        return Response({"name": self.addon.name, "seconds": round(seconds, 3)})


class AppAddonRunView(AppAddonScopedView):
    @extend_schema(
        request=AddonRunShape,
        responses={200: AddonRunResultShape, 400: S.Error},
        description="psql or redis-cli with `args`, run once in the add-on's image on the team's network with the "
        "app's config var (pg:psql, redis:cli).",
    )
    def post(self, request, app: str, addon: str):
        args = body(request).get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValidationError({"args": "must be a list of strings"})
        result = services.addon_run(
            addon=self.addon, app=self.app, args=args, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(result.__dict__)


# --- backups (berth.addons.backups) ----------------------------------------------------------------------------

AddonBackupShape = S._shape(
    "AddonBackup",
    name=s.CharField(),
    addon=s.CharField(),
    kind=s.ChoiceField(choices=list(KINDS)),
    state=s.ChoiceField(choices=BackupState.values),
    trigger=s.CharField(),
    size=s.IntegerField(allow_null=True),
    sha256=s.CharField(allow_blank=True),
    counts=s.DictField(help_text="rows per table (PostgreSQL) or [low, high] keys per db (Redis) at capture"),
    verify_counts=s.DictField(help_text="what the throwaway restore of the verification held"),
    started_at=s.DateTimeField(),
    finished_at=s.DateTimeField(allow_null=True),
    verified_at=s.DateTimeField(allow_null=True),
    error=s.CharField(allow_blank=True),
)
AddonRestoreShape = S._shape(
    "AddonBackupRestoreRequest",
    into=s.CharField(required=False, help_text="the add-on to restore into (default: the backup's own)"),
)
AddonRestoredShape = S._shape(
    "AddonBackupRestored",
    backup=s.CharField(),
    addon=s.CharField(),
    seconds=s.FloatField(),
    note=s.CharField(help_text="what the app saw while it ran"),
)
AddonScheduleRequestShape = S._shape(
    "AddonBackupScheduleRequest",
    at=s.CharField(help_text="HH:MM UTC"),
    keep=s.IntegerField(required=False, help_text="scheduled backups kept (default 7)"),
)


def backup_repr(backup: AddonBackup) -> dict:
    return {
        "name": backup.name,
        "addon": backup.addon_name,
        "kind": backup.kind,
        "state": backup.state,
        "trigger": backup.trigger,
        "size": backup.size,
        "sha256": backup.sha256,
        "counts": backup.counts,
        "verify_counts": backup.verify_counts,
        "started_at": backup.started_at,
        "finished_at": backup.finished_at,
        "verified_at": backup.verified_at,
        "error": backup.error,
    }


def schedule_repr(schedule: AddonBackupSchedule) -> dict:
    return {"at": f"{schedule.at:%H:%M} UTC", "keep": schedule.keep, "last_run_on": schedule.last_run_on}


# Backups outlive their add-on: <addon> may name a destroyed add-on that still has backups (its final one).
class AppAddonBackupsScopedView(AppScopedView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        name = self.kwargs["addon"]
        self.addon = selectors.addons_for_team(team=self.app.team).filter(name=name).first()
        self.backups = backups.backups_named(team=self.app.team, addon_name=name)
        if self.addon is None and not self.backups.exists():
            raise Http404(f"no add-on named {name!r}")
        if "backup" in self.kwargs:
            self.backup = backups.backup_of_team(
                team=self.app.team, ref=self.kwargs["backup"], addon_name=name
            )

    def live_addon(self) -> Addon:
        if self.addon is None:
            raise Http404(f"no add-on named {self.kwargs['addon']!r} (only its backups are left)")
        return self.addon


class AppAddonBackupsView(AppAddonBackupsScopedView):
    @extend_schema(responses={200: AddonBackupShape(many=True), 404: S.Error})
    def get(self, request, app: str, addon: str):
        return Response([backup_repr(b) for b in self.backups])

    @extend_schema(
        request=None,
        responses={201: AddonBackupShape, 409: S.Error},
        description="Capture a backup now (streamed to the backup store with its sha256). A failed capture is "
        "kept as a `failed` backup and answered 409 with its error.",
    )
    def post(self, request, app: str, addon: str):
        backup = backups.backup_capture(
            addon=self.live_addon(), actor=request.user, remote_addr=client_ip(request)
        )
        if backup.state == BackupState.FAILED:
            raise Conflict(f"backup {backup.name} of {backup.addon_name} failed: {backup.error}")
        return Response(backup_repr(backup), status=status.HTTP_201_CREATED)


class AppAddonBackupView(AppAddonBackupsScopedView):
    @extend_schema(responses={200: AddonBackupShape, 404: S.Error})
    def get(self, request, app: str, addon: str, backup: str):
        return Response(backup_repr(self.backup))

    @extend_schema(responses={204: S.NoContent, 404: S.Error}, description="Delete the backup and its data.")
    def delete(self, request, app: str, addon: str, backup: str):
        backups.backup_delete_by(backup=self.backup, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


async def _chunks_async(stream):
    read = sync_to_async(stream.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK):
            yield chunk
    finally:
        await sync_to_async(stream.close, thread_sensitive=False)()


def _chunks(stream):
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


class AppAddonBackupDownloadView(AppAddonBackupsScopedView):
    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="the backup's bytes, streamed (pg_dump -Fc or an RDB); X-Berth-Sha256 and "
                "Content-Length say what the client must get",
            ),
            409: S.Error,
        }
    )
    def get(self, request, app: str, addon: str, backup: str):
        stream = backups.backup_open(self.backup)
        content = _chunks_async(stream) if hasattr(request, "scope") else _chunks(stream)
        response = StreamingHttpResponse(content, content_type="application/octet-stream")
        suffix = "dump" if self.backup.kind == "postgres" else "rdb"
        response["Content-Disposition"] = (
            f'attachment; filename="{self.backup.addon_name}-{self.backup.name}.{suffix}"'
        )
        response["Content-Length"] = str(self.backup.size)
        response["X-Berth-Sha256"] = self.backup.sha256
        return response


class AppAddonBackupRestoreView(AppAddonBackupsScopedView):
    @extend_schema(
        request=AddonRestoreShape,
        responses={200: AddonRestoredShape, 400: S.Error, 409: S.Error},
        description="Restore the backup into its add-on (or `into`, an add-on of the same kind and team), all or "
        "nothing: the checksum is checked first, and the restore runs in one transaction.",
    )
    def post(self, request, app: str, addon: str, backup: str):
        into_name = str_field(body(request), "into", required=False)
        target = (
            selectors.addon_of_team(team=self.app.team, name=into_name) if into_name else self.live_addon()
        )
        seconds = backups.backup_restore(
            backup=self.backup, addon=target, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(
            {
                "backup": self.backup.name,
                "addon": target.name,
                "seconds": round(seconds, 2),
                "note": backups.restore_effect(target.kind),
            }
        )


class AppAddonBackupVerifyView(AppAddonBackupsScopedView):
    @extend_schema(
        request=None,
        responses={200: AddonBackupShape, 409: S.Error},
        description="Restore the backup into a throwaway server and compare its rows per table (keys per db) "
        "with those at capture: `verified` or `verify_failed` (the add-on's alarm).",
    )
    def post(self, request, app: str, addon: str, backup: str):
        return Response(backup_repr(backups.backup_verify(self.backup)))


class AppAddonBackupScheduleView(AppAddonScopedView):
    @extend_schema(responses={200: AddonBackupScheduleShape, 404: S.Error})
    def get(self, request, app: str, addon: str):
        schedule = backups.backup_schedule_of(self.addon)
        if schedule is None:
            raise Http404(f"{self.addon.name} has no backup schedule")
        return Response(schedule_repr(schedule))

    @extend_schema(request=AddonScheduleRequestShape, responses={200: AddonBackupScheduleShape, 400: S.Error})
    def put(self, request, app: str, addon: str):
        data = body(request)
        keep = data.get("keep", backups.DEFAULT_KEEP)
        schedule = backups.backup_schedule_set(
            addon=self.addon,
            at=str_field(data, "at"),
            keep=keep,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(schedule_repr(schedule))

    @extend_schema(responses={204: S.NoContent, 400: S.Error})
    def delete(self, request, app: str, addon: str):
        backups.backup_schedule_remove(addon=self.addon, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

"""The team activity feed and the audit log as a person reads them: one sentence per audit event saying what
changed (config keys, never values; replicas old -> new; old -> new role; domains), and a link to what it is about."""

import re

from django.urls import NoReverseMatch, reverse

from berth.audit.models import AuditEvent

# "demo v3" (release.*), "demo build 7" (build.*): the app and the release or build an action names
_RELEASE_TARGET = re.compile(r"^(?P<app>[a-z][a-z0-9-]{1,29}) v(?P<version>\d+)$")


def _names(values) -> str:
    return ", ".join(str(v) for v in values) if values else ""


def _arrow(old, new) -> str:
    return f"{'—' if old is None else old} → {'—' if new is None else new}"


def _formation(data: dict) -> str:
    parts = []
    for process, fields in sorted(data.items()):
        if not isinstance(fields, dict):
            continue
        was = fields.get("was") or {}
        for field in ("replicas", "memory_mb", "cpu"):
            if field in fields:
                label = {"replicas": "", "memory_mb": " memory MB", "cpu": " CPU"}[field]
                if field in was:
                    parts.append(f"{process}{label} {_arrow(was[field], fields[field])}")
                else:  # recorded before the audit kept the old value
                    parts.append(f"{process}{label} → {fields[field]}")
    return "scaled " + "; ".join(parts) if parts else "formation saved"


def _config(data: dict) -> str:
    added = set(data.get("added") or [])
    set_keys = data.get("set") or []
    changed = [k for k in set_keys if k not in added] if "added" in data else set_keys
    parts = []
    if added:
        parts.append(f"added {_names(sorted(added))}")
    if changed:
        parts.append(f"{'changed' if 'added' in data else 'set'} {_names(changed)}")
    if data.get("unset"):
        parts.append(f"unset {_names(data['unset'])}")
    return "config: " + "; ".join(parts) if parts else "config saved"


def activity_summary(event: AuditEvent) -> str:
    """What the event changed, in a few words (names and numbers from `data`; the values of config never)."""
    data, target, action = event.data or {}, event.target, event.action
    match action:
        case "formation.update":
            return _formation(data)
        case "config.update":
            return _config(data)
        case "membership.role_change":
            return f"role of {target}: {_arrow(data.get('from'), data.get('to'))}"
        case "membership.add":
            return f"added {target} as {data.get('role', 'member')}"
        case "membership.remove":
            return f"removed {target}"
        case "invitation.create":
            return f"invited {target} as {data.get('role', 'member')}"
        case "invitation.accept":
            return f"{target} joined as {data.get('role', 'member')}"
        case "invitation.revoke":
            return f"revoked the invitation of {target}"
        case "domain.add":
            return f"added domain {target}" + (f" to {data['app']}" if data.get("app") else "")
        case "domain.remove":
            return f"removed domain {target}" + (f" from {data['app']}" if data.get("app") else "")
        case "release.create":
            return f"released {target}" + (f": {data['description']}" if data.get("description") else "")
        case "release.rollback":
            new = data.get("new_version")
            return f"rolled back to {target}" + (f" as v{new}" if new else "")
        case "release.failed":
            return f"{target} failed" + (f": {str(data['reason'])[:200]}" if data.get("reason") else "")
        case "build.create":
            what = data.get("image_ref") or (data.get("git_sha") or "")[:7] or data.get("source") or ""
            return f"started {target}" + (f" ({what})" if what else "")
        case "app.create":
            return f"created app {target}"
        case "app.destroy":
            return f"deleted app {target}"
        case "team.create":
            return f"created team {target}"
        case "ps.restart":
            return f"restarted {data.get('process') or 'all processes'} of {target}"
        case "app.update":
            fields = data.get("fields") or []
            return f"settings of {target}: " + "; ".join(f"{f} = {data.get(f)}" for f in fields)
        case "cert.issue" | "cert.renew" | "cert.upload" | "cert.remove" | "cert.renew_request":
            verb = {
                "cert.issue": "issued",
                "cert.renew": "renewed",
                "cert.upload": "uploaded",
                "cert.remove": "removed",
                "cert.renew_request": "asked to renew",
            }[action]
            return f"certificate {verb} for {target}"
    return f"{action.replace('.', ' ').replace('_', ' ')} {target}".strip()


def activity_link(event: AuditEvent) -> str | None:
    """The page of what the event is about: a release's page, else its app's page (None when there is none)."""
    try:
        found = _RELEASE_TARGET.match(event.target or "")
        if event.action.startswith("release.") and found:
            version = int(found["version"])
            if event.action == "release.rollback" and (event.data or {}).get("new_version"):
                version = int(event.data["new_version"])
            return reverse("dashboard:release", kwargs={"app": found["app"], "version": version})
        app = (event.data or {}).get("app")
        if not app and event.action in ("formation.update", "config.update", "ps.restart", "app.update"):
            app = event.target
        if app and event.action != "app.destroy":
            return reverse("dashboard:app", kwargs={"app": app})
    except NoReverseMatch:  # a name recorded before the app-name rules: no link rather than an error
        return None
    return None

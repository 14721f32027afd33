"""Every API v1 route × method × role answers what berth.api.permissions.PERMISSION_MAP says.

Roles: owner, admin, member, viewer of the team the route is about; an outsider (owner of another team); anonymous.
Expected: PUBLIC -> the success status for everyone; otherwise anonymous -> 401; USER -> success for any signed-in
user; a team role -> outsider 404, a lower role 403 (naming the role needed), that role or higher the success status.
The guard test fails when a route exists that the map or this matrix does not cover.
"""

import pytest
from berth.accounts.roles import role_at_least
from berth.api.permissions import PERMISSION_MAP, PLATFORM_ADMIN, PUBLIC, USER
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.support.factories import world_create

ROLES = ["owner", "admin", "member", "viewer", "outsider", "anonymous"]
METHODS = ("get", "post", "put", "patch", "delete")


def _token_of(world, role):
    from berth.accounts.services import token_create

    user = world.users.get(role) or world.users["owner"]
    token, _ = token_create(user=user, name="to-delete")
    return token.pk


def _addressed_to(world, role):
    """No path kwargs; re-addresses the world's invitation to the role's user: it binds to the invited address."""
    user = world.users.get(role)
    if user is not None:
        type(world.invitation).objects.filter(pk=world.invitation.pk).update(email=user.email)
    return {}


# route name -> method -> (path kwargs(world, role), body(world), success status)
CASES = {
    "api-schema": {"GET": (None, None, 200)},
    "api-docs": {"GET": (None, None, 200)},
    "api:auth-token": {"POST": (None, lambda w: {"username": "the-owner", "password": "pw-123456"}, 201)},
    "api:me": {"GET": (None, None, 200)},
    "api:tokens": {"GET": (None, None, 200), "POST": (None, lambda w: {"name": "laptop"}, 201)},
    "api:token": {"DELETE": (lambda w, role: {"pk": _token_of(w, role)}, None, 204)},
    "api:teams": {"GET": (None, None, 200), "POST": (None, lambda w: {"name": "newteam"}, 201)},
    "api:team-members": {
        "GET": (lambda w, r: {"team": "acme"}, None, 200),
        # by email: a username is only found among the adder's teams (tests/security/test_auth.py)
        "POST": (
            lambda w, r: {"team": "acme"},
            lambda w: {"email": "newcomer@example.test", "role": "member"},
            201,
        ),
    },
    "api:team-member": {
        "PATCH": (lambda w, r: {"team": "acme", "username": "the-member"}, lambda w: {"role": "viewer"}, 200),
        "DELETE": (lambda w, r: {"team": "acme", "username": "the-viewer"}, None, 204),
    },
    "api:team-invitations": {
        "GET": (lambda w, r: {"team": "acme"}, None, 200),
        "POST": (lambda w, r: {"team": "acme"}, lambda w: {"email": "x@example.test", "role": "member"}, 201),
    },
    "api:team-invitation": {"DELETE": (lambda w, r: {"team": "acme", "pk": w.invitation.pk}, None, 204)},
    "api:team-audit": {"GET": (lambda w, r: {"team": "acme"}, None, 200)},
    # quotas: members read them; setting them is the platform's (superusers: tests/security/test_quotas.py)
    "api:team-quotas": {
        "GET": (lambda w, r: {"team": "acme"}, None, 200),
        "PATCH": (lambda w, r: {"team": "acme"}, lambda w: {"apps": 1000}, 200),
    },
    "api:invitation-accept": {"POST": (_addressed_to, lambda w: {"token": w.invitation_token}, 200)},
    "api:apps": {
        "GET": (None, None, 200),
        "POST": (None, lambda w: {"name": "newapp", "team": "acme"}, 201),
    },
    "api:app": {
        "GET": (lambda w, r: {"app": "demo"}, None, 200),
        "PATCH": (lambda w, r: {"app": "demo"}, lambda w: {"deploy_branch": "prod"}, 200),
        "DELETE": (lambda w, r: {"app": "demo"}, None, 204),
    },
    "api:app-config": {
        "GET": (lambda w, r: {"app": "demo"}, None, 200),
        "PATCH": (lambda w, r: {"app": "demo"}, lambda w: {"FOO": "bar"}, 200),
    },
    "api:app-formation": {
        "GET": (lambda w, r: {"app": "demo"}, None, 200),
        "PATCH": (lambda w, r: {"app": "demo"}, lambda w: [{"process": "web", "replicas": 2}], 200),
    },
    "api:app-domains": {
        "GET": (lambda w, r: {"app": "demo"}, None, 200),
        "POST": (lambda w, r: {"app": "demo"}, lambda w: {"hostname": "api.example.org"}, 201),
    },
    "api:app-domain": {"DELETE": (lambda w, r: {"app": "demo", "hostname": "www.example.org"}, None, 204)},
    "api:app-releases": {"GET": (lambda w, r: {"app": "demo"}, None, 200)},
    "api:app-metrics": {"GET": (lambda w, r: {"app": "demo"}, None, 200)},
    "api:app-release": {"GET": (lambda w, r: {"app": "demo", "version": 1}, None, 200)},
}


def _finished_build(world, role):
    from berth.builds.models import Build
    from berth.builds.services import log_stream

    build = Build.objects.create(app=world.app, source="image", image_ref="demo:v1", status="succeeded")
    log_stream(build).close("succeeded")
    return {"app": "demo", "build_id": build.pk}


def _queued_build(world, role):
    from berth.builds.models import Build

    Build.objects.filter(app=world.app, status__in=["queued", "building"]).update(status="failed")
    return {
        "app": "demo",
        "build_id": Build.objects.create(app=world.app, source="image", image_ref="x:1").pk,
    }


def _no_active_build(world, role):
    from berth.builds.models import Build

    Build.objects.filter(app=world.app, status__in=["queued", "building"]).update(status="failed")
    return {"app": "demo"}


# builds, deploys and what runs (berth.api.builds, berth.api.deploys)
CASES.update(
    {
        "api:app-builds": {"GET": (lambda w, r: {"app": "demo"}, None, 200)},
        "api:app-build": {"GET": (_finished_build, None, 200)},
        "api:app-build-output": {"GET": (_finished_build, None, 200)},
        "api:app-build-cancel": {"POST": (_queued_build, lambda w: {}, 200)},
        "api:app-build-cache": {"DELETE": (lambda w, r: {"app": "demo"}, None, 200)},
        "api:app-deploys": {"POST": (_no_active_build, lambda w: {"image": "127.0.0.1:1/none:1"}, 202)},
        "api:app-rollback": {"POST": (lambda w, r: {"app": "demo"}, lambda w: {"version": 1}, 201)},
        "api:app-processes": {"GET": (lambda w, r: {"app": "demo"}, None, 200)},
        # the demo app has no live release: past the permission check a restart answers 409
        "api:app-restart": {"POST": (lambda w, r: {"app": "demo"}, lambda w: {"process": "web"}, 409)},
        # past the permission check these answer "nothing live to run in" / "no such run": still role-gated first
        "api:app-runs": {"POST": (lambda w, r: {"app": "demo"}, lambda w: {"command": "true"}, 409)},
        "api:app-run": {"GET": (lambda w, r: {"app": "demo", "run_id": "not-a-run"}, None, 404)},
        "api:app-run-output": {"GET": (lambda w, r: {"app": "demo", "run_id": "not-a-run"}, None, 404)},
    }
)


def _certificate(world, role):
    """A certificate of the demo app that no router serves yet (the row is all these routes need)."""
    from berth.certs.models import Certificate

    certificate = Certificate.objects.create(app=world.app, hostnames=["demo.example.org"], source="acme")
    return {"app": "demo", "certificate_id": certificate.pk}


# certificates (berth.api.certs): an upload that is not PEM is refused past the permission check (400), and a
# renewal with ACME off (the tests' default) answers 409, both before any router or CA is asked
CASES.update(
    {
        "api:app-certs": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "POST": (lambda w, r: {"app": "demo"}, lambda w: {"certificate": "x", "private_key": "y"}, 400),
        },
        "api:app-cert": {"GET": (_certificate, None, 200), "DELETE": (_certificate, None, 204)},
        "api:app-cert-renew": {"POST": (_certificate, lambda w: {}, 409)},
    }
)


# the swarm's machines (berth.nodes): platform administrators (superusers) only, whatever their team role
CASES.update(
    {
        # [] (anywhere) needs no node lookup: the matrix runs without touching the swarm
        "api:app-placement": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "PUT": (lambda w, r: {"app": "demo"}, lambda w: {"process": "web", "constraints": []}, 200),
        },
        "api:nodes": {"GET": (None, None, 200)},
        "api:nodes-join": {"GET": (None, None, 200)},
        "api:node": {
            "GET": (lambda w, r: {"node": "any"}, None, 200),
            "PATCH": (lambda w, r: {"node": "any"}, lambda w: {"availability": "drain"}, 200),
            "DELETE": (lambda w, r: {"node": "any"}, None, 204),
        },
    }
)


def _pipeline(world, role, *, with_demo: bool = False):
    """A pipeline of the acme team (with the demo app in staging when asked)."""
    from berth.pipelines.models import Pipeline, PipelineApp

    pipeline = Pipeline.objects.create(team=world.team, name=f"flow-{role}")
    if with_demo:
        PipelineApp.objects.create(pipeline=pipeline, app=world.app, stage="staging")
    return {"pipeline": pipeline.name}


# pipelines (berth.api.pipelines): the demo app has no live release, so a promotion answers 409 past the check
CASES.update(
    {
        "api:pipelines": {
            "GET": (None, None, 200),
            "POST": (None, lambda w: {"name": "flow", "team": "acme"}, 201),
        },
        "api:pipeline": {"GET": (_pipeline, None, 200), "DELETE": (_pipeline, None, 204)},
        "api:pipeline-apps": {"POST": (_pipeline, lambda w: {"app": "demo", "stage": "staging"}, 200)},
        "api:pipeline-app": {
            "DELETE": (lambda w, r: _pipeline(w, r, with_demo=True) | {"app": "demo"}, None, 204)
        },
        "api:app-promote": {"POST": (lambda w, r: {"app": "demo"}, lambda w: {}, 409)},
        # a URL that is not https is refused past the permission check (400): no DNS, no fetch
        "api:app-source": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "PUT": (lambda w, r: {"app": "demo"}, lambda w: {"url": "ftp://example.org/x.git"}, 400),
            "DELETE": (lambda w, r: {"app": "demo"}, None, 204),
        },
    }
)


# accounts (berth.api.users): platform administrators only, whatever their team role
CASES.update(
    {
        "api:users": {
            "GET": (None, None, 200),
            "POST": (None, lambda w: {"username": "fresh", "email": "fresh@example.test"}, 201),
        },
        "api:user": {
            "GET": (lambda w, r: {"username": "the-viewer"}, None, 200),
            "PATCH": (lambda w, r: {"username": "the-viewer"}, lambda w: {"is_active": False}, 200),
        },
        "api:user-password-reset-link": {
            "POST": (lambda w, r: {"username": "the-viewer"}, lambda w: {}, 200)
        },
    }
)


def _cron_job(world, role):
    """A scheduled job of the demo app (never due during the test)."""
    from berth.jobs.services import cron_job_add

    return {"app": "demo", "job_id": cron_job_add(app=world.app, schedule="0 0 1 1 *", command="true").pk}


def _webhook(world, role):
    """An e-mail webhook of the acme team (adding one resolves no host)."""
    from berth.hooks.services import webhook_add

    webhook, _ = webhook_add(team=world.app.team, url="mailto:ops@example.test", events=None)
    return {"team": "acme", "webhook_id": webhook.pk}


# scheduled jobs (berth.api.jobs) and a team's outbound webhooks (berth.api.webhooks)
CASES.update(
    {
        "api:app-cron": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "POST": (
                lambda w, r: {"app": "demo"},
                lambda w: {"schedule": "*/15 * * * *", "command": "true"},
                201,
            ),
        },
        "api:app-cron-job": {"GET": (_cron_job, None, 200), "DELETE": (_cron_job, None, 204)},
        "api:team-webhooks": {
            "GET": (lambda w, r: {"team": "acme"}, None, 200),
            "POST": (lambda w, r: {"team": "acme"}, lambda w: {"url": "mailto:ops@example.test"}, 201),
        },
        "api:team-webhook": {"GET": (_webhook, None, 200), "DELETE": (_webhook, None, 204)},
        "api:team-webhook-deliveries": {"GET": (_webhook, None, 200)},
    }
)


def _drain(world, role):
    from berth.drains.services import drain_add

    # an address literal: resolving it needs no DNS, and adding a drain sends nothing yet
    drain = drain_add(app=world.app, url=f"syslog://1.1.1.1:{6000 + len(role)}")
    return {"app": "demo", "drain": str(drain.pk)}


# an app's log drains (berth.api.drains)
CASES.update(
    {
        "api:app-drains": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "POST": (lambda w, r: {"app": "demo"}, lambda w: {"url": "syslog+tls://1.1.1.1:6514"}, 201),
        },
        "api:app-drain": {"DELETE": (_drain, None, 204)},
    }
)


def _addon(world, role, *, attached: bool = False):
    """An add-on row of the acme team with no server behind it (the engine answers: no such service)."""
    from berth.addons.models import Addon, AddonAttachment
    from berth.apps.crypto import encrypt_text

    addon = Addon.objects.create(
        team=world.app.team, name=f"pg-{role}", kind="postgres", password_encrypted=encrypt_text("pw")
    )
    if attached:
        AddonAttachment.objects.create(addon=addon, app=world.app, config_var="DATABASE_URL")
    return {"app": "demo", "addon": addon.name}


# add-ons (berth.api.addons). Provisioning a server per case would take the matrix minutes: an allowed role's
# create is refused for its unknown kind (400), rotate reaches the engine, which has no such service (409), and
# a run of an add-on not attached to the app is refused (400); every refusal by role comes before those.
CASES.update(
    {
        "api:app-addons": {
            "GET": (lambda w, r: {"app": "demo"}, None, 200),
            "POST": (lambda w, r: {"app": "demo"}, lambda w: {"kind": "mysql"}, 400),
        },
        # a destroy takes a final backup first: of a row without a server that fails, and nothing is destroyed
        "api:app-addon": {"GET": (_addon, None, 200), "DELETE": (_addon, None, 409)},
        "api:app-addon-attachment": {
            "POST": (_addon, lambda w: {}, 201),
            "DELETE": (lambda w, r: _addon(w, r, attached=True), None, 204),
        },
        "api:app-addon-rotate": {"POST": (_addon, lambda w: {}, 409)},
        "api:app-addon-run": {"POST": (_addon, lambda w: {"args": ["-c", "select 1"]}, 400)},
        # a recovery not confirmed with the add-on's name is refused before anything is looked at
        "api:app-addon-recover": {"POST": (_addon, lambda w: {"confirm": "not-it"}, 400)},
    }
)


def _backup(world, role, *, state: str = "captured", schedule: bool = False):
    """A backup of an add-on row of acme, its object in the backup store (a few bytes); a failed one has none."""
    from berth.addons.models import AddonBackup, AddonBackupSchedule
    from berth.addons.store import backup_store

    kwargs = _addon(world, role)
    addon = world.app.team.addons.get(name=kwargs["addon"])
    key = f"acme/{addon.name}/b001.dump"
    stored = backup_store().put(key, [b"PGDMP-not-really"]) if state == "captured" else None
    AddonBackup.objects.create(
        team=addon.team,
        addon=addon,
        addon_name=addon.name,
        kind=addon.kind,
        name="b001",
        state=state,
        store_key=key if stored else "",
        size=stored.size if stored else None,
        sha256=stored.sha256 if stored else "",
    )
    if schedule:
        AddonBackupSchedule.objects.create(addon=addon, at="02:00")
    return {**kwargs, "backup": "b001"}


def _failed_backup(world, role):
    return _backup(world, role, state="failed")


def _scheduled(world, role):
    kwargs = _backup(world, role, schedule=True)
    del kwargs["backup"]
    return kwargs


# add-on backups: a capture of an add-on row without a server is a failed backup (409, it asks the engine); a
# restore or verification of a failed backup is refused (409) before the engine
CASES.update(
    {
        "api:app-addon-backups": {"GET": (_addon, None, 200), "POST": (_addon, None, 409)},
        "api:app-addon-backup": {"GET": (_backup, None, 200), "DELETE": (_backup, None, 204)},
        "api:app-addon-backup-download": {"GET": (_backup, None, 200)},
        "api:app-addon-backup-restore": {"POST": (_failed_backup, lambda w: {}, 409)},
        "api:app-addon-backup-verify": {"POST": (_failed_backup, None, 409)},
        "api:app-addon-backup-schedule": {
            "GET": (_scheduled, None, 200),
            "PUT": (_addon, lambda w: {"at": "02:00 UTC", "keep": 3}, 200),
            "DELETE": (_scheduled, None, 204),
        },
    }
)


def api_routes(resolver=None, prefix: str = "", namespace: str = "") -> list[tuple[str, str, str]]:
    """(route pattern, view name, METHOD) for every route under api/v1/ of the URLconf."""
    resolver = resolver or get_resolver()
    found = []
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += api_routes(entry, pattern, inner)
        elif isinstance(entry, URLPattern) and pattern.startswith("api/v1/"):
            view_class = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            name = f"{namespace}{entry.name}" if entry.name else f"<unnamed {pattern}>"
            methods = [m.upper() for m in METHODS if view_class is None or hasattr(view_class, m)]
            found += [(pattern, name, method) for method in methods]
    return found


def uncovered(routes) -> list[str]:
    """Routes × methods without a permission rule or a matrix case, and rules for routes that do not exist."""
    problems = []
    for pattern, name, method in routes:
        if method not in PERMISSION_MAP.get(name, {}):
            problems.append(f"{method} /{pattern} ({name}) has no rule in PERMISSION_MAP")
        if method not in CASES.get(name, {}):
            problems.append(f"{method} /{pattern} ({name}) has no case in the permission matrix")
    existing = {(name, method) for _, name, method in routes}
    for name, rules in PERMISSION_MAP.items():
        problems += [
            f"PERMISSION_MAP has {m} {name}, which is not a route" for m in rules if (name, m) not in existing
        ]
    return problems


def expected_status(rule: str, role: str, success: int) -> int:
    if rule == PUBLIC:
        return success
    if role == "anonymous":
        return 401
    if rule == USER:
        return success
    if rule == PLATFORM_ADMIN:
        return 403  # no role of a team is enough; superusers are tested in tests/cluster/test_nodes_api.py
    if role == "outsider":
        return 404
    return success if role_at_least(role, rule) else 403


# a route-method whose allowed answer asks the Docker engine (the app's running tasks): those cases are in the
# docker tier; the refusals (401, 403, 404) are answered before it and stay in the fast one
ASKS_DOCKER = {
    ("api:app-processes", "GET"),
    ("api:app-addon", "GET"),
    ("api:app-addon", "DELETE"),
    ("api:app-addon-rotate", "POST"),
    ("api:app-addon-backups", "POST"),
}


def _case(name: str, method: str, role: str):
    success = CASES[name][method][2]
    allowed = expected_status(PERMISSION_MAP[name][method], role, success) < 400
    marks = [pytest.mark.docker] if allowed and (name, method) in ASKS_DOCKER else []
    return pytest.param(name, method, role, marks=marks)


MATRIX = [
    _case(name, method, role)
    for name, methods in sorted(CASES.items())
    for method in sorted(methods)
    for role in ROLES
]


def test_every_api_route_has_a_rule_and_a_matrix_case():
    routes = api_routes()
    assert uncovered(routes) == []
    assert len(routes) == sum(len(m) for m in CASES.values())


def test_the_guard_notices_a_route_without_a_rule():
    routes = api_routes(get_resolver("tests.api.urls_with_extra_route"))
    problems = uncovered(routes)
    assert "GET /api/v1/forgotten (api-forgotten) has no rule in PERMISSION_MAP" in problems


def test_matrix_size():
    # 105 route-methods × 6 roles; update when routes are added (the guard above makes sure they are)
    assert len(MATRIX) == 105 * 6


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One world for the module's 630 cases, made once in a transaction rolled back after the last: each case runs in
    a savepoint of its own (`db`), rolled back after it. Made for each case, it was two thirds of the case's time."""
    fast_passwords = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with django_db_blocker.unblock(), transaction.atomic(), fast_passwords:
        yield world_create()
        transaction.set_rollback(True)


@pytest.mark.parametrize(("name", "method", "role"), MATRIX)
def test_permission_matrix(db, world, name, method, role):
    kwargs_fn, body_fn, success = CASES[name][method]
    url = reverse(name, kwargs=kwargs_fn(world, role) if kwargs_fn else None)
    body = body_fn(world) if body_fn else None
    client = world.client(role if role != "anonymous" else None)
    response = (
        getattr(client, method.lower())(url, body, format="json")
        if body is not None
        else (getattr(client, method.lower())(url))
    )
    rule = PERMISSION_MAP[name][method]
    expected = expected_status(rule, role, success)
    assert response.status_code == expected, (method, url, role, response.content[:300])
    if expected >= 400:
        assert "detail" in response.json()
    if expected == 403:
        assert f"needs the {rule} role" in response.json()["detail"]

"""The one permission map of API v1: route name -> HTTP method -> who may call it.

PUBLIC: anyone; USER: any signed-in user (the view scopes what they see to themselves);
viewer/member/admin/owner: at least that role in the team the route is about (the view's `permission_team`);
PLATFORM_ADMIN: a platform administrator, i.e. a Django superuser (`is_platform_admin`). Nodes are shared by every
team's apps, so being admin or owner of one team is not enough to drain a machine that other teams run on: on the
nodes' routes the view names the nodes' own rule instead (`platform_rule`: berth.nodes.selectors.can_see_nodes).
A user outside that team gets 404, a role too low 403 naming the role needed, no credentials 401.
A route or method missing from the map is refused (fail closed) and fails tests/api/test_permission_matrix.
"""

from django.http import Http404
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission

from berth.accounts.roles import ADMIN, MEMBER, VIEWER, role_at_least
from berth.accounts.selectors import user_role

PUBLIC = "public"
USER = "user"
PLATFORM_ADMIN = "platform-admin"

PERMISSION_MAP: dict[str, dict[str, str]] = {
    "api-schema": {"GET": PUBLIC},
    "api-docs": {"GET": PUBLIC},
    "api:auth-token": {"POST": PUBLIC},
    "api:me": {"GET": USER},
    # accounts are the platform's: platform administrators list, create, disable them and make reset links
    "api:users": {"GET": PLATFORM_ADMIN, "POST": PLATFORM_ADMIN},
    "api:user": {"GET": PLATFORM_ADMIN, "PATCH": PLATFORM_ADMIN},
    "api:user-password-reset-link": {"POST": PLATFORM_ADMIN},
    "api:teams": {"GET": USER, "POST": USER},
    "api:team-members": {"GET": VIEWER, "POST": ADMIN},
    "api:team-member": {"PATCH": ADMIN, "DELETE": ADMIN},
    "api:team-invitations": {"GET": ADMIN, "POST": ADMIN},
    "api:team-invitation": {"DELETE": ADMIN},
    "api:team-audit": {"GET": ADMIN},
    # quotas are the platform's to give (berth.apps.quotas): members read theirs, superusers set them
    "api:team-quotas": {"GET": VIEWER, "PATCH": PLATFORM_ADMIN},
    # outbound webhooks (berth.hooks): a URL can hold a secret (Slack's), so admins see and change them
    "api:team-webhooks": {"GET": ADMIN, "POST": ADMIN},
    "api:team-webhook": {"GET": ADMIN, "DELETE": ADMIN},
    "api:team-webhook-deliveries": {"GET": ADMIN},
    "api:invitation-accept": {"POST": USER},
    "api:tokens": {"GET": USER, "POST": USER},
    "api:token": {"DELETE": USER},
    "api:apps": {"GET": USER, "POST": MEMBER},
    "api:app": {"GET": VIEWER, "PATCH": MEMBER, "DELETE": ADMIN},
    "api:app-config": {"GET": MEMBER, "PATCH": MEMBER},
    "api:app-formation": {"GET": VIEWER, "PATCH": MEMBER},
    "api:app-domains": {"GET": VIEWER, "POST": MEMBER},
    "api:app-metrics": {"GET": VIEWER},
    "api:app-domain": {"DELETE": MEMBER},
    # certificates (berth.certs), like domains: viewers see them, members upload, remove and renew
    "api:app-certs": {"GET": VIEWER, "POST": MEMBER},
    "api:app-cert": {"GET": VIEWER, "DELETE": MEMBER},
    "api:app-cert-renew": {"POST": MEMBER},
    # log drains (berth.drains): a drain's URL can hold a secret (an HTTPS receiver's token), as config vars do
    "api:app-drains": {"GET": MEMBER, "POST": MEMBER},
    "api:app-drain": {"DELETE": MEMBER},
    # scheduled jobs (berth.jobs): viewers see them, members add and remove them (a run is like `berth run`)
    "api:app-cron": {"GET": VIEWER, "POST": MEMBER},
    "api:app-cron-job": {"GET": VIEWER, "DELETE": MEMBER},
    # add-ons (berth.addons): viewers see them, members create, attach, rotate and use them, admins destroy their data
    "api:app-addons": {"GET": VIEWER, "POST": MEMBER},
    "api:app-addon": {"GET": VIEWER, "DELETE": ADMIN},
    "api:app-addon-attachment": {"POST": MEMBER, "DELETE": MEMBER},
    "api:app-addon-rotate": {"POST": MEMBER},
    "api:app-addon-run": {"POST": MEMBER},
    "api:app-addon-recover": {"POST": ADMIN},  # replaces the server; the data becomes the backup's
    # add-on backups: members capture, verify and download (the data, as pg:psql reads it), admins restore over the
    # data and delete backups
    "api:app-addon-backups": {"GET": VIEWER, "POST": MEMBER},
    "api:app-addon-backup": {"GET": VIEWER, "DELETE": ADMIN},
    "api:app-addon-backup-download": {"GET": MEMBER},
    "api:app-addon-backup-restore": {"POST": ADMIN},
    "api:app-addon-backup-verify": {"POST": MEMBER},
    "api:app-addon-backup-schedule": {"GET": VIEWER, "PUT": MEMBER, "DELETE": MEMBER},
    "api:app-releases": {"GET": VIEWER},
    "api:app-release": {"GET": VIEWER},
    "api:app-builds": {"GET": VIEWER},
    "api:app-build": {"GET": VIEWER},
    "api:app-build-output": {"GET": VIEWER},
    "api:app-build-cancel": {"POST": MEMBER},
    "api:app-build-cache": {"DELETE": MEMBER},
    "api:app-deploys": {"POST": MEMBER},
    "api:app-rollback": {"POST": MEMBER},
    "api:app-processes": {"GET": VIEWER},
    "api:app-restart": {"POST": MEMBER},
    # a one-off run sees the app's config: as reading config, member or above
    "api:app-runs": {"POST": MEMBER},
    "api:app-run": {"GET": MEMBER},
    "api:app-run-output": {"GET": MEMBER},
    # where an app's processes run (berth.nodes placement): the app's members, like its formation
    "api:app-placement": {"GET": VIEWER, "PUT": MEMBER},
    # pipelines (berth.pipelines): members arrange them and promote, admins destroy them
    "api:pipelines": {"GET": USER, "POST": MEMBER},
    "api:pipeline": {"GET": VIEWER, "DELETE": ADMIN},
    "api:pipeline-apps": {"POST": MEMBER},
    "api:pipeline-app": {"DELETE": MEMBER},
    "api:app-promote": {"POST": MEMBER},
    # the git repository an app follows (berth.builds.sources): setting it shows the webhook secret
    "api:app-source": {"GET": VIEWER, "PUT": MEMBER, "DELETE": MEMBER},
    # the swarm's machines (berth.nodes): platform-wide, so platform administrators only
    "api:nodes": {"GET": PLATFORM_ADMIN},
    "api:nodes-join": {"GET": PLATFORM_ADMIN},
    "api:node": {"GET": PLATFORM_ADMIN, "PATCH": PLATFORM_ADMIN, "DELETE": PLATFORM_ADMIN},
}


def is_platform_admin(user) -> bool:
    """Who passes PLATFORM_ADMIN on a route whose view names no rule of its own: a superuser."""
    return bool(user.is_superuser)


def rule_for(view_name: str, method: str) -> str | None:
    method = "GET" if method == "HEAD" else method
    return PERMISSION_MAP.get(view_name, {}).get(method)


class RolePermission(BasePermission):
    """Applies PERMISSION_MAP. Views about a team define `permission_team(request) -> Team` (Http404 if unseen)."""

    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS":
            return bool(request.user and request.user.is_authenticated)
        match = request.resolver_match
        rule = rule_for(match.view_name if match else "", request.method)
        if rule is None:
            raise PermissionDenied("this route has no permission rule")
        if rule == PUBLIC:
            return True
        if not (request.user and request.user.is_authenticated):
            raise NotAuthenticated()
        if rule == USER:
            return True
        if rule == PLATFORM_ADMIN:
            if not getattr(view, "platform_rule", is_platform_admin)(request.user):
                raise PermissionDenied(
                    f"this needs the {PLATFORM_ADMIN} role (a superuser): it concerns every team (nodes, quotas)"
                )
            return True
        team = view.permission_team(request)
        role = user_role(user=request.user, team=team)
        if role is None:
            raise Http404("not found")
        if not role_at_least(role, rule):
            raise PermissionDenied(
                f"this needs the {rule} role (or higher) in team {team.name}; you are {role}"
            )
        return True

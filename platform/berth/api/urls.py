"""API v1 routes. Every route name here must have a rule in berth.api.permissions.PERMISSION_MAP."""

from django.urls import path

from berth.api import (
    apps,
    audit,
    builds,
    certs,
    config,
    deploys,
    domains,
    formation,
    invitations,
    members,
    nodes,
    releases,
    teams,
    tokens,
)

app_name = "api"

urlpatterns = [
    path("auth/token", tokens.AuthTokenView.as_view(), name="auth-token"),
    path("me", tokens.MeView.as_view(), name="me"),
    path("tokens", tokens.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:pk>", tokens.TokenView.as_view(), name="token"),
    path("teams", teams.TeamListView.as_view(), name="teams"),
    path("teams/<str:team>/members", members.TeamMembersView.as_view(), name="team-members"),
    path("teams/<str:team>/members/<str:username>", members.TeamMemberView.as_view(), name="team-member"),
    path("teams/<str:team>/invitations", invitations.TeamInvitationsView.as_view(), name="team-invitations"),
    path(
        "teams/<str:team>/invitations/<int:pk>",
        invitations.TeamInvitationView.as_view(),
        name="team-invitation",
    ),
    path("teams/<str:team>/audit", audit.TeamAuditView.as_view(), name="team-audit"),
    path("teams/<str:team>/quotas", teams.TeamQuotasView.as_view(), name="team-quotas"),
    path("invitations/accept", invitations.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("apps", apps.AppListView.as_view(), name="apps"),
    path("apps/<str:app>", apps.AppView.as_view(), name="app"),
    path("apps/<str:app>/config", config.AppConfigView.as_view(), name="app-config"),
    path("apps/<str:app>/formation", formation.AppFormationView.as_view(), name="app-formation"),
    path("apps/<str:app>/domains", domains.AppDomainsView.as_view(), name="app-domains"),
    path("apps/<str:app>/domains/<str:hostname>", domains.AppDomainView.as_view(), name="app-domain"),
    path("apps/<str:app>/certs", certs.AppCertificatesView.as_view(), name="app-certs"),
    path("apps/<str:app>/certs/<int:certificate_id>", certs.AppCertificateView.as_view(), name="app-cert"),
    path(
        "apps/<str:app>/certs/<int:certificate_id>/renew",
        certs.AppCertificateRenewView.as_view(),
        name="app-cert-renew",
    ),
    path("apps/<str:app>/releases", releases.AppReleasesView.as_view(), name="app-releases"),
    path("apps/<str:app>/releases/<int:version>", releases.AppReleaseView.as_view(), name="app-release"),
    path("apps/<str:app>/builds", builds.AppBuildsView.as_view(), name="app-builds"),
    path("apps/<str:app>/builds/<int:build_id>", builds.AppBuildView.as_view(), name="app-build"),
    path(
        "apps/<str:app>/builds/<int:build_id>/output",
        builds.AppBuildOutputView.as_view(),
        name="app-build-output",
    ),
    path(
        "apps/<str:app>/builds/<int:build_id>/cancel",
        builds.AppBuildCancelView.as_view(),
        name="app-build-cancel",
    ),
    path("apps/<str:app>/deploys", builds.AppDeploysView.as_view(), name="app-deploys"),
    path("apps/<str:app>/rollback", deploys.AppRollbackView.as_view(), name="app-rollback"),
    path("apps/<str:app>/ps", deploys.AppProcessesView.as_view(), name="app-processes"),
    path("apps/<str:app>/ps/restart", deploys.AppRestartView.as_view(), name="app-restart"),
    path("apps/<str:app>/runs", deploys.AppRunsView.as_view(), name="app-runs"),
    path("apps/<str:app>/runs/<str:run_id>", deploys.AppRunView.as_view(), name="app-run"),
    path(
        "apps/<str:app>/runs/<str:run_id>/output",
        deploys.AppRunOutputView.as_view(),
        name="app-run-output",
    ),
    path("apps/<str:app>/placement", nodes.AppPlacementView.as_view(), name="app-placement"),
    path("nodes", nodes.NodesView.as_view(), name="nodes"),
    path("nodes/join", nodes.NodesJoinView.as_view(), name="nodes-join"),
    path("nodes/<str:node>", nodes.NodeView.as_view(), name="node"),
]

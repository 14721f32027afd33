"""API v1 routes. Every route name here must have a rule in berth.api.permissions.PERMISSION_MAP."""

from django.urls import path

from berth.api import views
from berth.builds import api as builds_api
from berth.deploys import api as deploys_api
from berth.nodes import api as nodes_api

app_name = "api"

urlpatterns = [
    path("auth/token", views.AuthTokenView.as_view(), name="auth-token"),
    path("me", views.MeView.as_view(), name="me"),
    path("tokens", views.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:pk>", views.TokenView.as_view(), name="token"),
    path("teams", views.TeamListView.as_view(), name="teams"),
    path("teams/<str:team>/members", views.TeamMembersView.as_view(), name="team-members"),
    path("teams/<str:team>/members/<str:username>", views.TeamMemberView.as_view(), name="team-member"),
    path("teams/<str:team>/invitations", views.TeamInvitationsView.as_view(), name="team-invitations"),
    path("teams/<str:team>/invitations/<int:pk>", views.TeamInvitationView.as_view(), name="team-invitation"),
    path("teams/<str:team>/audit", views.TeamAuditView.as_view(), name="team-audit"),
    path("teams/<str:team>/quotas", views.TeamQuotasView.as_view(), name="team-quotas"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("apps", views.AppListView.as_view(), name="apps"),
    path("apps/<str:app>", views.AppView.as_view(), name="app"),
    path("apps/<str:app>/config", views.AppConfigView.as_view(), name="app-config"),
    path("apps/<str:app>/formation", views.AppFormationView.as_view(), name="app-formation"),
    path("apps/<str:app>/domains", views.AppDomainsView.as_view(), name="app-domains"),
    path("apps/<str:app>/domains/<str:hostname>", views.AppDomainView.as_view(), name="app-domain"),
    path("apps/<str:app>/releases", views.AppReleasesView.as_view(), name="app-releases"),
    path("apps/<str:app>/releases/<int:version>", views.AppReleaseView.as_view(), name="app-release"),
    path("apps/<str:app>/builds", builds_api.AppBuildsView.as_view(), name="app-builds"),
    path("apps/<str:app>/builds/<int:build_id>", builds_api.AppBuildView.as_view(), name="app-build"),
    path(
        "apps/<str:app>/builds/<int:build_id>/output",
        builds_api.AppBuildOutputView.as_view(),
        name="app-build-output",
    ),
    path(
        "apps/<str:app>/builds/<int:build_id>/cancel",
        builds_api.AppBuildCancelView.as_view(),
        name="app-build-cancel",
    ),
    path("apps/<str:app>/deploys", builds_api.AppDeploysView.as_view(), name="app-deploys"),
    path("apps/<str:app>/rollback", deploys_api.AppRollbackView.as_view(), name="app-rollback"),
    path("apps/<str:app>/ps", deploys_api.AppProcessesView.as_view(), name="app-processes"),
    path("apps/<str:app>/ps/restart", deploys_api.AppRestartView.as_view(), name="app-restart"),
    path("apps/<str:app>/runs", deploys_api.AppRunsView.as_view(), name="app-runs"),
    path("apps/<str:app>/runs/<str:run_id>", deploys_api.AppRunView.as_view(), name="app-run"),
    path(
        "apps/<str:app>/runs/<str:run_id>/output",
        deploys_api.AppRunOutputView.as_view(),
        name="app-run-output",
    ),
    path("apps/<str:app>/placement", nodes_api.AppPlacementView.as_view(), name="app-placement"),
    path("nodes", nodes_api.NodesView.as_view(), name="nodes"),
    path("nodes/join", nodes_api.NodesJoinView.as_view(), name="nodes-join"),
    path("nodes/<str:node>", nodes_api.NodeView.as_view(), name="node"),
]

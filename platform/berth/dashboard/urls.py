"""Dashboard pages (server-rendered Django templates, small plain JS). App names are validated by the services;
here they only have to look like one, so other routes (api/, git/, static/) never match."""

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from berth.dashboard import (
    activity_views,
    addon_views,
    cert_views,
    cli_views,
    first_deploy_views,
    join_views,
    release_views,
    signin,
    team_views,
    views,
    workflow_views,
)


class AppNameConverter:
    regex = "[a-z][a-z0-9-]{1,29}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AppNameConverter, "appname")

app_name = "dashboard"

urlpatterns = [
    path("login/", signin.SignInView.as_view(), name="login"),
    path("cli/berth", cli_views.cli_download, name="cli-download"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("", views.home, name="home"),
    path("apps/", views.apps_list, name="apps"),
    path("apps/status.json", views.apps_status, name="apps-status"),
    path("apps/new", views.app_new, name="app-new"),
    path("apps/<appname:app>/", views.app_detail, name="app"),
    path("apps/<appname:app>/config/value", views.config_value, name="config-value"),
    path("apps/<appname:app>/config/set", views.config_set, name="config-set"),
    path("apps/<appname:app>/config/unset", views.config_unset, name="config-unset"),
    path("apps/<appname:app>/formation", views.formation_set, name="formation"),
    path("apps/<appname:app>/domains/add", views.domain_add, name="domain-add"),
    path("apps/<appname:app>/domains/remove", views.domain_remove, name="domain-remove"),
    path("apps/<appname:app>/certs/upload", cert_views.certificate_upload, name="cert-upload"),
    path(
        "apps/<appname:app>/certs/<int:certificate_id>/remove",
        cert_views.certificate_remove,
        name="cert-remove",
    ),
    path(
        "apps/<appname:app>/certs/<int:certificate_id>/renew", cert_views.certificate_renew, name="cert-renew"
    ),
    path("apps/<appname:app>/https", cert_views.https_settings, name="https-settings"),
    path("apps/<appname:app>/maintenance", workflow_views.maintenance_set, name="app-maintenance"),
    path("apps/<appname:app>/previews", workflow_views.previews_set, name="app-previews"),
    path("apps/<appname:app>/source", workflow_views.source_set, name="app-source"),
    path("apps/<appname:app>/source/remove", workflow_views.source_remove, name="app-source-remove"),
    path("apps/<appname:app>/cron/add", workflow_views.cron_add, name="cron-add"),
    path("apps/<appname:app>/cron/<int:job_id>/remove", workflow_views.cron_remove, name="cron-remove"),
    path("apps/<appname:app>/promote", workflow_views.promote, name="app-promote"),
    path("apps/<appname:app>/addons/new", addon_views.addon_create, name="addon-create"),
    path("apps/<appname:app>/addons/<str:addon>/destroy", addon_views.addon_destroy, name="addon-destroy"),
    path(
        "apps/<appname:app>/addons/<str:addon>/backups/capture",
        addon_views.backup_capture,
        name="addon-backup-capture",
    ),
    path(
        "apps/<appname:app>/addons/<str:addon>/backups/<str:backup>/verify",
        addon_views.backup_verify,
        name="addon-backup-verify",
    ),
    path(
        "apps/<appname:app>/addons/<str:addon>/backups/<str:backup>/restore",
        addon_views.backup_restore,
        name="addon-backup-restore",
    ),
    path("apps/<appname:app>/rollback", views.rollback, name="rollback"),
    path("apps/<appname:app>/deploy", views.deploy_image, name="deploy"),
    path("apps/<appname:app>/settings", views.app_settings, name="app-settings"),
    path("apps/<appname:app>/destroy", views.app_destroy, name="app-destroy"),
    path("apps/<appname:app>/deploy-token", first_deploy_views.deploy_token_create, name="deploy-token"),
    path("apps/<appname:app>/builds/<int:build_id>/", views.build_detail, name="build"),
    path("apps/<appname:app>/releases/<int:version>/", release_views.release_detail, name="release"),
    path("apps/<appname:app>/builds/<int:build_id>/cancel", views.build_cancel, name="build-cancel"),
    path("teams/switch", team_views.team_switch, name="team-switch"),
    path("teams/new", team_views.team_new, name="team-new"),
    path("teams/<str:team>/", team_views.team_detail, name="team"),
    path("teams/<str:team>/activity", activity_views.team_activity, name="team-activity"),
    path("teams/<str:team>/audit", activity_views.team_audit, name="team-audit"),
    path("teams/<str:team>/members/add", team_views.member_add, name="member-add"),
    path("teams/<str:team>/members/<str:username>/role", team_views.member_role, name="member-role"),
    path("teams/<str:team>/members/<str:username>/remove", team_views.member_remove, name="member-remove"),
    path("teams/<str:team>/invitations/new", team_views.invitation_create, name="invitation-new"),
    path(
        "teams/<str:team>/invitations/<int:pk>/revoke", team_views.invitation_revoke, name="invitation-revoke"
    ),
    path("teams/<str:team>/pipelines/new", workflow_views.pipeline_create, name="pipeline-create"),
    path(
        "teams/<str:team>/pipelines/<str:pipeline>/destroy",
        workflow_views.pipeline_destroy,
        name="pipeline-destroy",
    ),
    path(
        "teams/<str:team>/pipelines/<str:pipeline>/apps",
        workflow_views.pipeline_app_set,
        name="pipeline-app-set",
    ),
    path(
        "teams/<str:team>/pipelines/<str:pipeline>/apps/<appname:app>/remove",
        workflow_views.pipeline_app_remove,
        name="pipeline-app-remove",
    ),
    path("teams/<str:team>/webhooks/new", workflow_views.webhook_add, name="webhook-add"),
    path(
        "teams/<str:team>/webhooks/<int:webhook_id>/remove",
        workflow_views.webhook_remove,
        name="webhook-remove",
    ),
    path("invitations/accept", team_views.invitation_accept, name="invitation-accept"),
    path("join/", join_views.join, name="join"),
    path("join/<str:token>/", join_views.invitation_open, name="invitation-open"),
    path("password-reset/", join_views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", join_views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>/",
        join_views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/done/", join_views.PasswordResetCompleteView.as_view(), name="password-reset-complete"
    ),
    path("tokens/new", team_views.token_create, name="token-new"),
    path("tokens/<int:pk>/revoke", team_views.token_revoke, name="token-revoke"),
    path("nodes/", team_views.nodes, name="nodes"),
]

from django.contrib import admin

from berth.releases.models import Release


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    """Read-only: releases are immutable, and their config snapshot is encrypted (only its keys are shown)."""

    list_display = ["app", "version", "status", "image", "description", "created_by", "created_at"]
    list_filter = ["status", "app__team", "created_at"]
    search_fields = ["app__name", "image", "description"]
    fields = [
        "app",
        "version",
        "image",
        "procfile",
        "config_keys",
        "description",
        "created_by",
        "status",
        "status_reason",
        "status_changed_at",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="config keys")
    def config_keys(self, obj: Release) -> str:
        return ", ".join(obj.config_keys)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

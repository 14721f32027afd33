from django.contrib import admin

from berth.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "target", "actor", "team", "remote_addr"]
    list_filter = ["action", "team", "created_at"]
    search_fields = ["action", "target", "actor__username", "team__name", "remote_addr"]
    readonly_fields = ["actor", "team", "action", "target", "remote_addr", "data", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

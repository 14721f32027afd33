from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.template.response import TemplateResponse
from django.urls import reverse

from berth.accounts.models import ApiToken, Invitation, Membership, Team
from berth.accounts.services import password_reset_link_parts

QUOTA_FIELDS = ["max_apps", "max_replicas", "max_memory_mb"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "max_apps", "max_replicas", "max_memory_mb", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name"]}),
        (
            "Quotas",
            {
                "fields": QUOTA_FIELDS,
                "description": "Empty: the installation's default (BERTH_TEAM_MAX_APPS, BERTH_TEAM_MAX_REPLICAS, "
                "BERTH_TEAM_MAX_MEMORY_MB); 0: no limit. Memory counts replicas x each process type's memory "
                "limit (BERTH_PROCESS_MEMORY_MB when none is set).",
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        # quotas are the platform's to give: staff who may edit teams still cannot raise their own
        return QUOTA_FIELDS if not request.user.is_superuser else []


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "user__email", "team__name"]
    raw_id_fields = ["user"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "team", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role", "team", "accepted_at", "revoked_at"]
    search_fields = ["email", "team__name"]
    # The token exists only as a hash; nothing here can show or set it.
    exclude = ["token_hash"]
    readonly_fields = ["invited_by", "accepted_by", "accepted_at", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # created through the API so the clear token can be shown once


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["name", "user__username", "prefix"]
    exclude = ["token_hash"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class BerthUserAdmin(UserAdmin):
    """Django's user admin with one more action: a password reset link for a platform admin to hand over."""

    actions = ["password_reset_links"]

    @admin.action(description="Make password reset links")
    def password_reset_links(self, request, queryset):
        links = []
        for user in queryset.filter(is_active=True):
            uidb64, token = password_reset_link_parts(
                user=user, actor=request.user, remote_addr=request.META.get("REMOTE_ADDR")
            )
            path = reverse("dashboard:password-reset-confirm", kwargs={"uidb64": uidb64, "token": token})
            links.append((user.get_username(), request.build_absolute_uri(path)))
        # answered in this page, never kept in a message cookie or the session
        context = {**self.admin_site.each_context(request), "links": links, "title": "Password reset links"}
        return TemplateResponse(request, "admin/password_reset_links.html", context)

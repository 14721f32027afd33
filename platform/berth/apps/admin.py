from django.contrib import admin

from berth.apps.models import App, ConfigVar, Domain, Formation


class FormationInline(admin.TabularInline):
    model = Formation
    extra = 0


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "deploy_branch", "buildpack", "created_at"]
    list_filter = ["team", "buildpack", "created_at"]
    search_fields = ["name", "team__name"]
    inlines = [FormationInline, DomainInline]

    def get_readonly_fields(self, request, obj=None):
        # The name is the app's hostname, repository and service label: it never changes once created.
        return ["name", "created_at"] if obj else ["created_at"]


@admin.register(ConfigVar)
class ConfigVarAdmin(admin.ModelAdmin):
    """Keys only: values stay encrypted and are never shown or edited here (use the API or the CLI)."""

    list_display = ["key", "app", "updated_at"]
    list_filter = ["app__team", "app"]
    search_fields = ["key", "app__name"]
    fields = ["app", "key", "updated_at"]
    readonly_fields = ["app", "key", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # unsetting a var makes a release; that goes through config_update (API, CLI)


@admin.register(Formation)
class FormationAdmin(admin.ModelAdmin):
    list_display = ["app", "process", "replicas", "memory_mb", "cpu", "updated_at"]
    list_filter = ["process", "app__team"]
    search_fields = ["app__name", "process"]


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["hostname", "app", "created_at"]
    list_filter = ["app__team", "created_at"]
    search_fields = ["hostname", "app__name"]

from django.contrib import admin

from berth.builds.models import Build


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "app",
        "source",
        "status",
        "buildpack",
        "git_sha",
        "image_ref",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "source", "buildpack")
    search_fields = ("app__name", "git_sha", "image_ref", "image")
    readonly_fields = [f.name for f in Build._meta.fields]

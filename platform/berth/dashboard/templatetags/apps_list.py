"""`{% app_rows apps %}`: the apps list's rows (dashboard/views.py `_status_rows`), written by one format string
per row. The template's loop was a fifth of a page of 100 apps (5 ms of 27, a `{{ }}` lookup and escape at a time);
this is the same markup, each value escaped, in a tenth of that."""

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

ROW = (
    '<tr data-app="{}">\n'
    '      <td><a href="{}" class="app-link">{}</a></td>\n'
    '      <td data-field="current_release">{}</td>\n'
    '      <td><span class="badge state-{}" data-field="state">{}</span></td>\n'
    '      <td data-field="build">{}</td>\n'
    '      <td class="hide-narrow"><a href="{}" rel="noopener">{}</a></td>\n'
    "    </tr>\n"
)
NONE = "—"


def _row(app: dict) -> tuple:
    release = f"v{app['current_release']}" if app["current_release"] else NONE
    build = (
        format_html('<a href="{}">#{} {}</a>', app["build_link"], app["build_id"], app["build_status"])
        if app["build_id"]
        else NONE
    )
    name, state, url = app["name"], app["state"], app["url"]
    return (name, app["link"], name, release, state, state, build, url, url)


@register.simple_tag
def app_rows(apps: list[dict]) -> SafeString:
    return format_html_join("    ", ROW, (_row(app) for app in apps))

"""The apps list's rows (`{% app_rows %}`, dashboard/templatetags/apps_list.py) are written without the template
engine: every value a tenant or the platform put in a row is escaped all the same."""

from berth.dashboard.templatetags.apps_list import app_rows
from django.utils.html import escape
from django.utils.safestring import SafeString

HOSTILE = "<script>alert('x')</script>&\""


def row(**values) -> dict:
    return {
        "name": "demo",
        "link": "/apps/demo/",
        "build_link": "/apps/demo/builds/7/",
        "build_id": 7,
        "build_status": "succeeded",
        "url": "http://demo.apps.localhost",
        "current_release": 3,
        "state": "running",
    } | values


def test_each_value_of_a_row_is_escaped():
    for field in ("name", "link", "build_link", "build_status", "url", "state"):
        html = app_rows([row(**{field: HOSTILE})])
        assert isinstance(html, SafeString)
        assert "<script>" not in html and escape(HOSTILE) in html, field


def test_a_row_links_the_app_its_last_build_and_its_url():
    html = app_rows([row(), row(name="other", build_id=None, current_release=None)])
    assert '<tr data-app="demo">' in html and '<a href="/apps/demo/" class="app-link">demo</a>' in html
    assert '<a href="/apps/demo/builds/7/">#7 succeeded</a>' in html
    assert '<td data-field="current_release">v3</td>' in html
    assert '<a href="http://demo.apps.localhost" rel="noopener">http://demo.apps.localhost</a>' in html
    # no build and no release yet: a dash
    assert html.count('<td data-field="build">—</td>') == 1
    assert html.count('<td data-field="current_release">—</td>') == 1

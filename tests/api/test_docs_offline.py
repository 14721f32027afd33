"""The API docs page loads nothing from the internet (air-gapped installs): Swagger UI comes from Berth's static files."""

import re

from django.contrib.staticfiles import finders


def test_the_api_docs_page_references_only_berths_own_static_files(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"""(src|href)=["']https?://""", html), "the docs page loads from another host"
    assets = re.findall(r"""(?:src|href)=["']/static/([^"']+)["']""", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert finders.find(asset), f"{asset} is referenced but not shipped"

"""Promotion through the running platform: staging's live image, unchanged (no rebuild), rolled out to production
with production's own config vars, health-gated and followed like any deploy."""

import secrets

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import APP_PREFIX
from tests.e2e.test_push_to_live import commit_and_push, get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def test_a_promotion_serves_stagings_exact_image_with_productions_config(repo, tenant, berth_platform):
    from berth.apps.services import app_create
    from berth.builds.models import Build
    from berth.releases.models import Release
    from berth.runtime.client import docker_client

    staging = tenant.app
    production = app_create(team=tenant.team, name=APP_PREFIX + secrets.token_hex(3), actor=tenant.user)
    api = httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    assert commit_and_push(repo, "from staging").returncode == 0
    assert api.post("/pipelines", json={"name": "shop"}).status_code == 201
    for app, stage in ((staging, "staging"), (production, "production")):
        assert api.post("/pipelines/shop/apps", json={"app": app.name, "stage": stage}).status_code == 200
    assert api.patch(f"/apps/{production.name}/config", json={"STAGE": "prod"}).status_code == 200

    answer = api.post(f"/apps/{staging.name}/promote", json={})
    assert answer.status_code == 202, answer.text
    (outcome,) = answer.json()
    assert outcome["app"] == production.name and outcome["error"] == "" and outcome["build"]
    wait_for(
        lambda: Build.objects.get(pk=outcome["build"]).status in ("succeeded", "failed"),
        timeout=180,
        message="the promotion's build to end",
    )
    build = Build.objects.get(pk=outcome["build"])
    assert build.status == "succeeded", build.status_reason
    assert get(berth_platform.router_port, f"{production.name}.localhost").text.strip() == "from staging"

    upstream = Release.objects.get(app=staging, status="live")
    downstream = Release.objects.get(app=production, status="live")
    assert build.image_ref == upstream.image
    client = docker_client()
    assert client.images.get(downstream.image).id == client.images.get(upstream.image).id  # the same bytes
    assert downstream.config.get("STAGE") == "prod" and "STAGE" not in upstream.config
    # production is the last stage: nothing to promote it to, said in one line
    refused = api.post(f"/apps/{production.name}/promote", json={})
    assert refused.status_code == 400 and "last stage" in refused.json()["detail"]

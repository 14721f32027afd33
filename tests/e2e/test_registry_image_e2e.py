"""An image deploy with Berth's registry on: the pulled image is pushed to Berth's registry too and the release
(and its service) names it there by digest, so every node pulls it from Berth, not from where it came."""

import httpx
import pytest

from tests.e2e import test_builds_image as image_tests
from tests.e2e import test_builds_support as support
from tests.e2e.test_builds_support import get_app_page

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

# fixtures
api, app_name, local_registry = support.api, support.app_name, support.local_registry
registry_image = image_tests.registry_image


@pytest.fixture
def platform_env(berth_registry) -> dict:
    return dict(berth_registry.env)


def test_a_deployed_image_is_pushed_to_berths_registry_and_runs_from_there_by_digest(
    registry_image, berth_platform, app_name, api, berth_registry
):  # registry_image first: its clean-up after the platform's (test_builds_image.registry_image)
    from berth.runtime.client import docker_client
    from berth.runtime.scheduler import get_scheduler

    reference, message, _ = registry_image
    answer = image_tests.deploy(api, app_name, reference)
    assert answer.status_code == 202, answer.text
    lines = image_tests.output(api, app_name, answer.json()["id"])
    assert lines[-1] == f"[build {answer.json()['id']} succeeded]", lines[-8:]
    assert f"-----> Pushing to the registry {berth_registry.address}…" in lines
    release = api.get(f"/apps/{app_name}/releases/1").json()
    name, _, digest = release["image"].partition("@")
    assert name == f"{berth_registry.address}/{app_name}" and digest.startswith("sha256:")
    assert [s.image for s in get_scheduler().services(app=app_name)] == [release["image"]]
    stored = httpx.get(
        f"http://{berth_registry.address}/v2/{app_name}/manifests/{digest}",
        auth=(berth_registry.user, berth_registry.password),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert stored.status_code == 200
    assert get_app_page(berth_platform.router_port, app_name).text == message + "\n"
    client = docker_client()
    for image in client.api.images(name=f"{berth_registry.address}/{app_name}"):
        for tag in image.get("RepoTags") or []:
            client.api.remove_image(tag)  # the tag the push made; the fixtures remove the rest

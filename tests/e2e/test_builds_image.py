"""Deploys from an image reference against a real local registry (Debian's docker-registry on 127.0.0.1): the pull's
progress streams in the build's output, the release runs the image by digest, and bad references, missing images
and unreachable registries each say why while the previous release keeps serving."""

import io
import secrets

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e import test_builds_support as support
from tests.e2e.test_builds_support import get_app_page, keep_transcript, wait_build

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

api, app_name, local_registry = support.api, support.app_name, support.local_registry  # fixtures

IMAGE_DOCKERFILE = """\
FROM berth/stack:bookworm
RUN mkdir -p /srv/site && echo "{message}" > /srv/site/index.html
CMD ["sh", "-c", "exec python3 -m http.server \\"$PORT\\" --directory /srv/site"]
"""


@pytest.fixture
def registry_image(local_registry):
    """A small image built FROM the stack, pushed to the local registry as demo:1, and no longer tagged here
    (so the deploy really pulls it). Returns (reference, message it serves, the registry's digest).

    A test asks for it before berth_platform: its clean-up (the pulled image removed) then runs after the
    platform's, which removes the app's service and containers; before it, the image was still in use, and
    stayed on the engine for good."""
    from berth.runtime.client import docker_client

    client = docker_client(timeout=300)
    message = f"from the registry {secrets.token_hex(4)}"
    repository = f"{local_registry.host}/demo"
    image, _ = client.images.build(
        fileobj=io.BytesIO(IMAGE_DOCKERFILE.format(message=message).encode()),
        tag=f"{repository}:1",
        labels={"org.berth.test": "1"},
        rm=True,
    )
    for event in client.images.push(repository, tag="1", stream=True, decode=True):
        assert "error" not in event, event
    client.images.remove(f"{repository}:1")
    manifest = httpx.get(
        f"http://{local_registry.host}/v2/demo/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert manifest.status_code == 200, manifest.text
    yield f"{repository}:1", message, manifest.headers["Docker-Content-Digest"]
    # the engine's list as it is (images.list inspects each one, which fails when another test removes one between)
    for leftover in client.api.images(filters={"label": "org.berth.test=1"}):
        tags = leftover.get("RepoTags") or []
        if any(tag.startswith(repository) for tag in tags) or image.id == leftover["Id"]:
            try:
                client.images.remove(leftover["Id"], force=True)
            except Exception:  # still used by a container being removed
                pass


def deploy(api, app: str, image: str) -> httpx.Response:
    return api.post(f"/apps/{app}/deploys", json={"image": image})


def output(api, app: str, build_id: int) -> list[str]:
    """The build's streamed output (GET …/output follows it to its end), as the CLI reads it."""
    with api.stream("GET", f"/apps/{app}/builds/{build_id}/output", timeout=300) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines()]


def test_an_image_from_a_local_registry_is_pulled_pinned_by_digest_and_served(
    registry_image, berth_platform, app_name, api, local_registry
):
    reference, message, digest = registry_image
    answer = deploy(api, app_name, reference)
    assert answer.status_code == 202, answer.text
    build = answer.json()
    assert (build["source"], build["image_ref"], build["status"]) == ("image", reference, "queued")

    lines = output(api, app_name, build["id"])
    keep_transcript(
        "image-deploy", "\n".join([f"POST /api/v1/apps/{app_name}/deploys image={reference}", *lines])
    )
    assert lines[0] == f"-----> Pulling {reference}"
    assert any("Pull complete" in line for line in lines), lines  # the pull's progress, layer by layer
    assert f"       digest {local_registry.host}/demo@{digest}" in lines
    assert "-----> Released v1" in lines
    assert lines[-1] == f"[build {build['id']} succeeded]"

    release = api.get(f"/apps/{app_name}/releases/1").json()
    assert release["image"] == f"{local_registry.host}/demo@{digest}"
    assert release["status"] == "live"
    done = api.get(f"/apps/{app_name}/builds/{build['id']}").json()
    assert done["image"] == release["image"] and done["release"] == 1
    assert get_app_page(berth_platform.router_port, app_name).text == message + "\n"

    # bad references: refused before anything is queued
    for bad in ("Not A Ref", "demo:tag:extra", "", "127.0.0.1:5000/demo@sha256:short"):
        refused = deploy(api, app_name, bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert "image" in refused.text
    assert len(api.get(f"/apps/{app_name}/builds").json()) == 1

    # a missing tag, then a registry nobody listens on: failed builds with a clear last line, v1 keeps serving
    unreachable = f"127.0.0.1:{free_port()}/demo:1"
    for reference, says in (
        (f"{local_registry.host}/demo:missing", "manifest unknown"),
        (unreachable, "connection refused"),
    ):
        failed = deploy(api, app_name, reference)
        assert failed.status_code == 202, failed.text
        lines = output(api, app_name, failed.json()["id"])
        keep_transcript(f"image-deploy-{says.replace(' ', '-')}", "\n".join(lines))
        assert lines[-1] == f"[build {failed.json()['id']} failed]"
        assert lines[-2].startswith(f"error: cannot pull {reference}: "), lines[-3:]
        assert says in lines[-2].lower(), lines[-2]
        done = wait_build(api, app_name, failed.json()["id"])
        assert done["status"] == "failed" and done["status_reason"] == lines[-2].removeprefix("error: ")
        assert get_app_page(berth_platform.router_port, app_name).text == message + "\n"
        assert api.get(f"/apps/{app_name}/releases").json()[0]["version"] == 1

    # an image only on this machine (its registry unreachable, as air-gapped): deployed from the local copy
    from berth.runtime.client import docker_client

    client = docker_client(timeout=300)
    local_only = f"127.0.0.1:{free_port()}/airgapped:1"
    client.images.build(
        fileobj=io.BytesIO(IMAGE_DOCKERFILE.format(message="built here").encode()),
        tag=local_only,
        labels={"org.berth.test": "1"},
        rm=True,
    )
    try:
        answer = deploy(api, app_name, local_only)
        assert answer.status_code == 202, answer.text
        lines = output(api, app_name, answer.json()["id"])
        assert f"-----> Using the copy of {local_only} on this machine" in lines, lines
        assert lines[-1] == f"[build {answer.json()['id']} succeeded]", lines[-5:]
        assert get_app_page(berth_platform.router_port, app_name).text == "built here\n"
    finally:
        try:
            client.images.remove(local_only, force=True)
        except Exception:  # still used by a container being removed; the label lets a later run find it
            pass

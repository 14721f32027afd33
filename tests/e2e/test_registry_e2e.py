"""The private registry end to end on the real platform: every push goes to the registry and the services name
the image by digest; with 2 releases kept, older images leave the registry (manifests 404, blobs off the disk)
and this node, the live release keeps serving and a rollback to a pruned release is refused. A registry that
is down refuses the push with one clear line and the live release keeps serving."""

import json
import os
import subprocess
import time

import httpx
import pytest

from tests.conftest import free_port, wait_for
from tests.e2e.test_push_to_live import commit_and_push, get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

KEEP = 2
PUSHES = 7
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def platform_env(berth_registry) -> dict:
    return {**berth_registry.env, "BERTH_IMAGE_RETENTION_RELEASES": str(KEEP)}


@pytest.fixture
def registry_settings(settings, berth_registry):
    """The test process reads the same registry settings as the platform (for its own look-ups)."""
    settings.BERTH_REGISTRY = berth_registry.address
    settings.BERTH_REGISTRY_DIR = berth_registry.directory
    settings.BERTH_REGISTRY_USER = berth_registry.user
    settings.BERTH_REGISTRY_PASSWORD = berth_registry.password
    settings.BERTH_IMAGE_RETENTION_RELEASES = KEEP
    return settings


@pytest.fixture
def app_images_removed(tenant, berth_registry):
    """Afterwards: the images this app's builds made here (local and registry tags), whatever the test left."""
    yield
    import docker.errors
    from berth.runtime.client import docker_client

    client = docker_client()
    for repository in (f"berth/{tenant.app.name}", f"{berth_registry.address}/{tenant.app.name}"):
        for image in client.api.images(name=repository):
            for ref in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
                try:
                    client.api.remove_image(ref)
                except docker.errors.APIError:
                    pass  # in use by a container that is going away; not ours to force


def manifest(registry, app: str, digest: str) -> httpx.Response:
    return httpx.get(
        f"http://{registry.address}/v2/{app}/manifests/{digest}",
        auth=(registry.user, registry.password),
        headers={"Accept": MANIFEST_V2},
        timeout=10,
    )


def blob_dir(registry, digest: str):
    hexa = digest.partition(":")[2]
    return registry.data / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa


def local_image(reference: str):
    import docker.errors
    from berth.runtime.client import docker_client

    try:
        return docker_client().images.get(reference)
    except docker.errors.ImageNotFound:
        return None


def test_pushes_run_by_digest_and_old_images_leave_the_registry_and_the_node(
    repo, tenant, berth_platform, berth_registry, registry_settings, app_images_removed
):
    from berth.builds.models import build_cache_ref, build_run_ref
    from berth.releases.models import Release
    from berth.releases.services import ImagePruned, release_image_available
    from berth.runtime.scheduler import get_scheduler

    app = tenant.app.name
    host = f"{app}.localhost"
    repository = f"{berth_registry.address}/{app}"
    layers: dict[int, set[str]] = {}  # version -> its blobs: the manifest itself, its config and layers
    sizes: dict[str, int] = {}  # blob -> bytes
    for version in range(1, PUSHES + 1):
        pushed = commit_and_push(repo, f"version {version}")
        assert pushed.returncode == 0, (
            pushed.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
        )
        assert f"remote: -----> Pushing to the registry {berth_registry.address}" in pushed.stderr
        assert "remote:        done in " in pushed.stderr
        release = Release.objects.get(app=tenant.app, version=version)
        name, _, digest = release.image.partition("@")
        assert name == repository and digest.startswith("sha256:"), release.image
        # the service names exactly that digest reference: every node runs these bytes
        services = [
            s for s in get_scheduler().services(app=app) if s.release == version and s.process == "web"
        ]
        assert [s.image for s in services] == [release.image]
        answer = manifest(berth_registry, app, digest)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        layers[version] = {digest, body["config"]["digest"], *(layer["digest"] for layer in body["layers"])}
        sizes.update({digest: len(answer.content), body["config"]["digest"]: body["config"]["size"]})
        sizes.update({layer["digest"]: layer["size"] for layer in body["layers"]})
        assert get(berth_platform.router_port, host).text.strip() == f"version {version}"

    # the GC queued after each deploy keeps the last KEEP releases (the live one among them)
    pruned_versions = list(range(1, PUSHES - KEEP + 1))
    kept_versions = list(range(PUSHES - KEEP + 1, PUSHES + 1))

    def collected() -> bool:
        rows = dict(Release.objects.filter(app=tenant.app).values_list("version", "image_pruned_at"))
        return all(rows[v] is not None for v in pruned_versions) and not any(rows[v] for v in kept_versions)

    wait_for(collected, timeout=120, interval=1, message="the old releases marked pruned")
    releases = {r.version: r for r in Release.objects.filter(app=tenant.app)}

    def registry_clean() -> bool:
        return all(
            manifest(berth_registry, app, releases[v].image.partition("@")[2]).status_code == 404
            for v in pruned_versions
        ) and not any(blob_dir(berth_registry, b).exists() for b in _only_in(layers, pruned_versions))

    # the manifests go first, the blobs at the registry's garbage-collect just after
    wait_for(registry_clean, timeout=120, interval=1, message="pruned manifests and their blobs gone")
    for version in kept_versions:
        assert manifest(berth_registry, app, releases[version].image.partition("@")[2]).status_code == 200
        assert all(blob_dir(berth_registry, b).exists() for b in layers[version])
    # on disk: exactly the kept releases' blobs of this app are left (the manifests' blobs included)
    pushed = set().union(*layers.values())
    present = {b for b in pushed if blob_dir(berth_registry, b).exists()}
    assert present == set().union(*(layers[v] for v in kept_versions))
    reclaimed = sum(sizes[b] for b in pushed - present)
    assert reclaimed > 0

    # and off this node: neither the digest reference nor the build's own tag is left for a pruned release
    wait_for(
        lambda: all(local_image(releases[v].image) is None for v in pruned_versions),
        timeout=60,
        message="the pruned releases' local images removed",
    )
    for version in kept_versions:
        assert local_image(releases[version].image) is not None

    # the build tags too: a pruned release's containers may still be stopping when its deploy's GC runs (they are
    # removed in the background once the new release serves); the GC queued after that removal takes the rest
    def build_tags() -> list[str]:
        # the app's dependency and run caches (builds.models.build_cache_ref, build_run_ref) are no release's image
        tags = [t for i in docker_images(f"berth/{app}") for t in i.get("RepoTags") or []]
        return [t for t in tags if t not in (build_cache_ref(app_name=app), build_run_ref(app_name=app))]

    wait_for(lambda: len(build_tags()) == KEEP, timeout=60, message=f"{KEEP} build tags left")

    # the live release still serves, and the pruned ones cannot come back
    assert get(berth_platform.router_port, host).text.strip() == f"version {PUSHES}"
    assert Release.objects.get(app=tenant.app, version=PUSHES).status == "live"
    with pytest.raises(ImagePruned, match="image of v1 was removed"):
        release_image_available(releases[1])
    release_image_available(releases[PUSHES - 1])  # a kept one can
    refused = httpx.post(
        f"{berth_platform.web_url}/api/v1/apps/{app}/rollback",
        json={"version": 1},
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    assert refused.status_code == 409 and "the image of v1 was removed" in refused.json()["detail"]
    assert Release.objects.filter(app=tenant.app).count() == PUSHES  # nothing was made
    assert get(berth_platform.router_port, host).text.strip() == f"version {PUSHES}"
    _report(sum(sizes[b] for b in pushed), reclaimed)

    # destroying the app takes its images along: every tag in the registry, every image on this node
    destroyed = httpx.request(
        "DELETE",
        f"{berth_platform.web_url}/api/v1/apps/{app}",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    assert destroyed.status_code in (200, 202, 204), destroyed.text

    def all_gone() -> bool:
        tags = httpx.get(
            f"http://{berth_registry.address}/v2/{app}/tags/list",
            auth=(berth_registry.user, berth_registry.password),
            timeout=10,
        )
        in_registry = tags.status_code == 200 and (tags.json().get("tags") or [])
        return not in_registry and not docker_images(f"berth/{app}") and not docker_images(repository)

    wait_for(all_gone, timeout=120, interval=2, message="the destroyed app's images gone everywhere")


def _only_in(layers: dict[int, set[str]], versions: list[int]) -> set[str]:
    kept = set().union(*(blobs for v, blobs in layers.items() if v not in versions))
    return set().union(*(layers[v] for v in versions)) - kept


def docker_images(repository: str) -> list[dict]:
    from berth.runtime.client import docker_client

    return docker_client().api.images(name=repository)


def _report(pushed: int, reclaimed: int) -> None:
    path = os.environ.get("BERTH_REGISTRY_FIGURES")
    if path:  # a bench run keeps the figures: bytes of the app's blobs pushed, and reclaimed by the GC
        with open(path, "w") as handle:
            json.dump({"pushed_blob_bytes": pushed, "reclaimed_blob_bytes": reclaimed}, handle)


def test_a_registry_that_is_down_refuses_the_push_and_the_live_release_keeps_serving(
    repo, tenant, berth_platform, berth_registry, registry_settings, app_images_removed
):
    from berth.releases.models import Release

    host = f"{tenant.app.name}.localhost"
    first = commit_and_push(repo, "served before")
    assert first.returncode == 0, first.stderr

    # the worker now pushes to a registry nothing listens on (as when the registry process is down)
    dead = f"127.0.0.1:{free_port()}"
    worker = berth_platform.processes["worker"]
    worker.terminate()
    worker.wait(timeout=60)
    berth_platform.env["BERTH_REGISTRY"] = dead
    berth_platform.start("worker")

    started = time.monotonic()
    second = commit_and_push(repo, "never served")
    assert second.returncode != 0
    errors = [line.strip() for line in second.stderr.splitlines() if line.startswith("remote: error")]
    # the build's one line saying why, then the hook's usual verdict
    assert errors[0] == (
        f"remote: error: cannot log in to the registry {dead}: connection refused (is the `registry` process "
        "running?); nothing was deployed, the live release keeps serving"
    ), second.stderr
    assert len(errors) == 2 and errors[1].endswith("failed; the push was not accepted and nothing changed")
    assert time.monotonic() - started < 120
    # nothing half-applied: no release was made, the first one serves
    assert list(Release.objects.filter(app=tenant.app).values_list("version", "status")) == [(1, "live")]
    assert get(berth_platform.router_port, host).text.strip() == "served before"
    # and the repository still matches what runs
    head = subprocess.run(
        ["git", "ls-remote", "berth", "main"], cwd=repo, capture_output=True, text=True, check=True
    )
    local = subprocess.run(
        ["git", "rev-parse", "HEAD~1"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert head.stdout.split()[0] == local

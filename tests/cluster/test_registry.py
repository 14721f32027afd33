"""Images travel through a private registry: Debian's docker-registry with htpasswd auth on the cluster's
bridge; an image pushed once is named by digest and every node pulls exactly those bytes; a wrong password is a
clear error; an old image is deleted by digest and garbage-collected."""

import subprocess
import warnings

import docker.errors
import pytest

from tests.cluster import harness
from tests.conftest import free_port, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from berth.nodes import registry

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

USER, PASSWORD = "berth", "registry-secret"


@pytest.fixture
def private_registry(healthy_cluster, tmp_path):
    listen = f"{harness.NETWORK}.1:{free_port()}"
    config = registry.registry_config_write(
        directory=tmp_path / "registry", listen=listen, users={USER: PASSWORD}
    )
    process = subprocess.Popen(
        registry.registry_command(config),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "registry.log", "wb"),
    )
    try:
        import httpx

        wait_for(
            lambda: _answers(httpx, f"http://{listen}/v2/"), timeout=15, message="the registry answering"
        )
        yield listen, config
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 401  # up, and asking for credentials
    except httpx.HTTPError:
        return False


def test_every_node_pulls_the_pushed_image_by_digest(healthy_cluster, on_cluster, private_registry):
    from berth.runtime.scheduler import ProcessSpec
    from berth.runtime.swarm import SwarmScheduler

    listen, config = private_registry
    client = healthy_cluster.manager.client
    with pytest.raises(docker.errors.APIError, match="unauthorized|401"):
        client.login(username=USER, password="wrong", registry=listen, reauth=True)
    client.login(username=USER, password=PASSWORD, registry=listen, reauth=True)
    repository = f"{listen}/t-reg/web"
    reference = registry.image_push(client=client, image=harness.STACK_IMAGE, repository=repository, tag="v1")
    assert reference.startswith(f"{repository}@sha256:")

    # the client that logged in sends the credentials with the service: the workers pull with them
    scheduler = SwarmScheduler(client=client, extra_labels={"org.berth.test": "1"})
    spec = ProcessSpec(
        app="t-reg",
        team="t-reg",
        release=1,
        process="web",
        image=reference,
        command="python3 -m http.server 5000",
        env={},
        replicas=3,
    )
    try:
        scheduler.ensure_process(spec)
        tasks = scheduler.wait_running(app="t-reg", release=1, process="web", replicas=3, timeout=90)
        assert len({t.node_id for t in tasks}) == 3
        for node in healthy_cluster.nodes:
            digests = [d for image in node.client.images.list() for d in image.attrs.get("RepoDigests") or []]
            assert reference in digests, (node.name, digests)
    finally:
        scheduler.remove(app="t-reg", timeout=30)

    digest = reference.partition("@")[2]
    assert registry.digests_to_prune(references=[reference, f"{repository}@sha256:{'0' * 64}"], keep=1) == [
        digest
    ]
    assert registry.manifest_delete(
        registry=listen, repository="t-reg/web", digest=digest, user=USER, password=PASSWORD
    )
    gc = subprocess.run(registry.registry_gc_command(config), capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr[-500:]
    assert "blob eligible for deletion" in gc.stdout + gc.stderr

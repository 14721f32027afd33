"""The scheduler with Berth's registry configured: a service whose image lives in the registry is created with
the registry's credentials when it answers, and still starts from this node's copy when it is down."""

import secrets

import docker.errors
import pytest
from berth.runtime.client import docker_client
from berth.runtime.scheduler import ProcessSpec
from berth.runtime.swarm import SwarmScheduler

from tests.conftest import free_port

pytestmark = [pytest.mark.docker]

LABELS = {"org.berth.test": "1", "org.berth.test.suite": "scheduler-registry"}


def test_a_registry_that_is_down_does_not_stop_a_service_whose_image_this_node_has(settings, caplog):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: the login fails with "connection refused"
    settings.BERTH_REGISTRY = dead
    settings.BERTH_REGISTRY_USER, settings.BERTH_REGISTRY_PASSWORD = "berth", "secret"
    app = f"t-sreg-{secrets.token_hex(3)}"
    image = f"{dead}/{app}:build-1"
    client = docker_client()
    client.images.get("berth/stack:bookworm").tag(f"{dead}/{app}", "build-1")
    scheduler = SwarmScheduler(extra_labels=LABELS)
    spec = ProcessSpec(
        app=app,
        team=app,
        release=1,
        process="worker",
        image=image,
        command="sleep 600",
        env={},
        replicas=1,
    )
    try:
        with caplog.at_level("WARNING", logger="berth.runtime.swarm"):
            scheduler.ensure_process(spec)
        assert f"cannot log in to the registry {dead}: connection refused" in caplog.text
        tasks = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
        assert tasks[0].running
    finally:
        scheduler.remove(app=app, timeout=30)
        from berth.runtime.swarm import team_network_remove

        team_network_remove(team=app, client=client)
        try:
            client.images.remove(image)
        except docker.errors.APIError:
            pass

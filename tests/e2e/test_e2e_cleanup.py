"""The end-to-end tests' clean-up removes its own test's apps only: the engine also runs the t-e2e-* apps of the
tests running beside it (the other xdist worker, another checkout's run), some of them deploying at that moment."""

import contextlib
import secrets

import docker.errors
import pytest

from tests.e2e.conftest import APP_PREFIX
from tests.e2e.run_route_support import remove_test_apps

pytestmark = pytest.mark.docker


def _service(client, app: str) -> str:
    """A service labelled as the platform labels a release's web process; no replica, so nothing runs."""
    from berth.runtime.scheduler import LABEL_APP, LABEL_PROCESS, LABEL_RELEASE, installation_labels

    labels = {LABEL_APP: app, LABEL_RELEASE: "1", LABEL_PROCESS: "web", **installation_labels()}
    return client.api.create_service(
        docker.types.TaskTemplate(container_spec=docker.types.ContainerSpec(image="berth/stack:bookworm")),
        name=f"{app}-v1-web",
        labels=labels,
        mode=docker.types.ServiceMode("replicated", replicas=0),
    )["ID"]


def test_a_tests_clean_up_leaves_the_apps_of_the_tests_beside_it_running(make_app):
    from berth.runtime.client import docker_client

    client = docker_client()
    ours = make_app(name=APP_PREFIX + secrets.token_hex(3)).name
    theirs = APP_PREFIX + secrets.token_hex(3)  # another test's app: not in this test's database
    services = [_service(client, ours), _service(client, theirs)]
    try:
        remove_test_apps()
        left = {s["Spec"]["Name"] for s in client.api.services(filters={"id": services})}
        assert left == {f"{theirs}-v1-web"}
    finally:
        for service in services:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_service(service)

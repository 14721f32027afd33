"""People, an app and Redis keys for the observe tests; every app name is unique, its keys removed afterwards."""

import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest


@pytest.fixture
def rds():
    from berth.core.redis import redis_client

    return redis_client()


@pytest.fixture
def app_name(rds):
    """A fresh app name; its log, event and health keys are deleted before and after."""
    name = f"obs-{uuid.uuid4().hex[:10]}"
    keys = [f"berth:logs:{name}", f"berth:events:{name}", f"berth:health:{name}"]
    rds.delete(*keys)
    yield name
    rds.delete(*keys)


@pytest.fixture
def people(transactional_db, make_user, make_team, make_app, app_name):
    """A team with an owner and a viewer and one app; an outsider in another team; tokens for each."""
    from berth.accounts.services import membership_add, token_create

    owner, viewer, outsider = make_user(), make_user(), make_user()
    team = make_team(owner=owner)
    membership_add(team=team, user=viewer, role="viewer", actor=owner)
    make_team(owner=outsider)
    app = make_app(app_name, team=team, actor=owner)
    tokens = {
        name: token_create(user=user, name="t")[1]
        for name, user in (("owner", owner), ("viewer", viewer), ("outsider", outsider))
    }
    return SimpleNamespace(owner=owner, viewer=viewer, outsider=outsider, team=team, app=app, tokens=tokens)


TEST_LABEL = "org.berth.observe-test"
# no test runs its services this long: older ones are an earlier (killed) run's leftovers, younger ones may be
# another test's running now (a parallel worker's, or another checkout's)
LEFTOVER_AGE = 3600


def _remove_services(client, label: str, *, older_than: float = 0) -> None:
    cutoff = time.time() - older_than
    for service in client.services.list(filters={"label": label}):
        created = datetime.fromisoformat(service.attrs["CreatedAt"][:19]).replace(tzinfo=UTC).timestamp()
        if older_than and created > cutoff:
            continue
        try:
            service.remove()
        except Exception:  # already gone
            pass


@pytest.fixture
def run_service():
    """`run_service(app, script, process=, log_options=)` runs a one-replica Swarm service labelled like Berth's
    (org.berth.app/process/release on the service and its container, org.berth.test=1) that runs `sh -c script`
    in the stack image. Services of this test (and leftovers of a killed earlier run) are removed afterwards."""
    import docker
    from berth.runtime.client import docker_client

    from tests.conftest import wait_for

    client = docker_client()
    _remove_services(client, TEST_LABEL, older_than=LEFTOVER_AGE)
    run_id = uuid.uuid4().hex[:12]
    ours = f"{TEST_LABEL}={run_id}"

    def run(
        app: str, script: str, *, process: str = "web", log_options: dict | None = None, restart: str = "none"
    ):
        labels = {
            "org.berth.app": app,
            "org.berth.process": process,
            "org.berth.release": "1",
            "org.berth.test": "1",
            TEST_LABEL: run_id,
        }
        name = f"{app}-v1-{process}"
        # a killed earlier run's service under this very name (Docker's name filter matches parts of names)
        for stale in client.services.list(filters={"name": name, "label": TEST_LABEL}):
            if stale.name == name:
                _remove_services(client, f"{TEST_LABEL}={stale.attrs['Spec']['Labels'][TEST_LABEL]}")
        service = client.services.create(
            "berth/stack:bookworm",
            ["sh", "-c", script],
            name=name,
            labels=labels,
            container_labels=labels,
            restart_policy=docker.types.RestartPolicy(condition=restart, delay=200_000_000),
            log_driver="json-file",
            log_driver_options=log_options or {"max-size": "10m", "max-file": "3"},
            # `sh -c` as PID 1 ignores SIGTERM: without this each removal waits Docker's 10 s for the SIGKILL
            stop_grace_period=500_000_000,
        )

        def container():
            found = client.containers.list(filters={"label": f"com.docker.swarm.service.id={service.id}"})
            return found[0] if found else None

        wait_for(container, timeout=60, message=f"a running container of {app}")
        return SimpleNamespace(service=service, container=container, labels={TEST_LABEL: run_id})

    run.only_labels = {TEST_LABEL: run_id}
    try:
        yield run
    finally:
        _remove_services(client, ours)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if not client.containers.list(all=True, filters={"label": ours}):
                    break
            except docker.errors.NotFound:
                pass  # one went away between the listing and docker-py's inspect of it: look again
            time.sleep(0.3)

"""One engine, two installations: each sees, follows and removes only its own services (and adopts unlabelled ones).

Real Swarm: "another installation" is this code run with another BERTH_INSTALLATION_ID, as a second install on the
same engine would be; services made before installations had ids are made here by hand, without the label.
"""

import secrets
import threading
from dataclasses import replace

import docker.errors
import pytest
from berth.runtime.client import docker_client
from berth.runtime.events import container_events
from berth.runtime.installation import foreign_installations
from berth.runtime.logs import ContainerLogs
from berth.runtime.scheduler import (
    LABEL_APP,
    LABEL_INSTALLATION,
    LABEL_PROCESS,
    LABEL_RELEASE,
    LABEL_TEAM,
    ProcessSpec,
    SchedulerError,
    is_ours,
)
from berth.runtime.stats import EngineStats
from berth.runtime.swarm import SwarmScheduler, team_network_ensure

from tests.conftest import manage, wait_for

pytestmark = pytest.mark.docker

IMAGE = "berth/stack:bookworm"
TEST_LABELS = {"org.berth.test": "1", "org.berth.test.suite": "installation"}
TEST_FILTER = [f"{k}={v}" for k, v in TEST_LABELS.items()]


def cleanup() -> None:
    """Everything this module labelled, whichever installation made it (also an earlier killed run's)."""
    client = docker_client()
    for service in client.api.services(filters={"label": TEST_FILTER}):
        try:
            client.api.remove_service(service["ID"])
        except docker.errors.NotFound:
            pass
    wait_for(
        lambda: not client.api.containers(all=True, filters={"label": TEST_FILTER}),
        timeout=60,
        interval=0.2,
        message="test containers to go",
    )
    for network in client.api.networks(filters={"label": TEST_FILTER}):
        try:
            client.api.remove_network(network["Id"])
        except docker.errors.APIError:
            pass  # lingers a moment after its last container; the next run removes it


@pytest.fixture(autouse=True)
def clean_swarm():
    cleanup()
    yield
    cleanup()


def spec(app: str, team: str) -> ProcessSpec:
    return ProcessSpec(
        app=app,
        team=team,
        release=1,
        process="worker",
        image=IMAGE,
        command="while true; do echo tick; sleep 1; done",
        env={},
        replicas=1,
        port=None,
    )


def as_installation(settings, installation: str) -> None:
    settings.BERTH_INSTALLATION_ID = installation


def test_the_rule_ours_unlabelled_ours_another_id_theirs(settings):
    assert is_ours({LABEL_INSTALLATION: settings.BERTH_INSTALLATION_ID})
    assert is_ours({LABEL_APP: "shop"})  # made before installations had ids: adopted on upgrade
    assert is_ours(None)
    assert not is_ours({LABEL_INSTALLATION: "another-install"})


def test_another_installations_app_of_the_same_name_is_neither_shown_nor_removed(settings):
    ours, theirs = settings.BERTH_INSTALLATION_ID, f"other-{secrets.token_hex(4)}"
    app = f"t-inst-{secrets.token_hex(3)}"
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)

    as_installation(settings, theirs)  # the other install ran `shop` on this engine, then was abandoned
    scheduler.ensure_process(spec(app, f"ti-{secrets.token_hex(3)}"))
    scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    [their_service] = scheduler.services(app=app)
    service = docker_client().api.inspect_service(their_service.id)
    assert service["Spec"]["Labels"][LABEL_INSTALLATION] == theirs
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Labels"][LABEL_INSTALLATION] == theirs

    as_installation(settings, ours)  # a fresh install on the same engine, with an app of the same name
    assert scheduler.services(app=app) == []
    assert scheduler.tasks(app=app) == []
    assert scheduler.remove(app=app) == []  # destroying our app leaves theirs alone
    assert docker_client().api.inspect_service(their_service.id)["ID"] == their_service.id
    # the one name Swarm allows is theirs: refused with the reason, never taken over
    with pytest.raises(SchedulerError, match="another Berth installation"):
        scheduler.ensure_process(spec(app, "devs"))
    # the log shipper and the stats sampler do not see their containers
    logs = ContainerLogs()
    try:
        assert logs.containers(labels=[f"{LABEL_APP}={app}"], running=True) == []
    finally:
        logs.close()
    stats = EngineStats()
    try:
        assert app not in stats.apps()
    finally:
        stats.close()
    # doctor reports them: which installation, how many, how to remove
    [other] = [found for found in foreign_installations() if found.installation == theirs]
    assert other.counts["services"] == 1 and other.counts["containers"] >= 1 and other.counts["networks"] == 1
    report = manage("doctor", env={"BERTH_INSTALLATION_ID": ours})
    assert f"another installation ({theirs}) left 1 services" in report.stdout, report.stdout + report.stderr
    assert (
        f"docker service rm $(docker service ls -q --filter label={LABEL_INSTALLATION}={theirs})"
        in report.stdout
    )

    as_installation(settings, theirs)  # what the other install sees is still there
    assert [s.id for s in scheduler.services(app=app)] == [their_service.id]


def test_the_watcher_and_shipper_follow_no_event_of_another_installations_container(settings):
    ours, theirs = settings.BERTH_INSTALLATION_ID, f"other-{secrets.token_hex(4)}"
    mine, other = f"t-inst-{secrets.token_hex(3)}", f"t-inst-{secrets.token_hex(3)}"
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)
    as_installation(settings, theirs)  # their service, not running yet
    other_id = scheduler.ensure_process(replace(spec(other, f"ti-{secrets.token_hex(3)}"), replicas=0))
    as_installation(settings, ours)
    events = container_events(labels=[*TEST_FILTER, LABEL_APP], actions=("start",))
    seen: list[str] = []
    follower = threading.Thread(
        target=lambda: seen.extend(e.attributes[LABEL_APP] for e in events), daemon=True
    )
    follower.start()
    try:
        # their container starts while this installation follows the engine's events, then ours does
        current = docker_client().api.inspect_service(other_id)
        docker_client().api.update_service(
            other_id,
            version=current["Version"]["Index"],
            task_template=current["Spec"]["TaskTemplate"],
            name=current["Spec"]["Name"],
            labels=current["Spec"]["Labels"],
            mode={"Replicated": {"Replicas": 1}},
            endpoint_spec=current["Spec"].get("EndpointSpec"),
        )
        wait_for(
            lambda: any(
                t["Status"]["State"] == "running"
                for t in docker_client().api.tasks(filters={"service": other_id})
            ),
            timeout=60,
            message="their container running",
        )
        scheduler.ensure_process(spec(mine, f"ti-{secrets.token_hex(3)}"))
        scheduler.wait_running(app=mine, release=1, process="worker", replicas=1, timeout=60)
        wait_for(lambda: mine in seen, timeout=10, message="our container's start event")
    finally:
        events.close()
    assert other not in seen


def test_a_service_made_before_installations_had_ids_is_adopted(settings):
    """An upgrade must not orphan running apps: unlabelled services are this installation's, listed and removed."""
    app, team = f"t-inst-{secrets.token_hex(3)}", f"ti-{secrets.token_hex(3)}"
    client = docker_client()
    network = team_network_ensure(team=team, labels=TEST_LABELS)
    labels = {LABEL_APP: app, LABEL_TEAM: team, LABEL_RELEASE: "1", LABEL_PROCESS: "worker", **TEST_LABELS}
    from docker import types

    client.api.create_service(
        types.TaskTemplate(
            container_spec=types.ContainerSpec(image=IMAGE, args=["sleep", "600"], labels=labels),
            networks=[network],
        ),
        name=f"{app}-v1-worker",
        labels=labels,
    )
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)
    [service] = scheduler.services(app=app)
    assert (service.app, service.release, service.process) == (app, 1, "worker")
    scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    assert len(scheduler.tasks(app=app)) == 1
    assert scheduler.remove(app=app) == [f"{app}-v1-worker"]

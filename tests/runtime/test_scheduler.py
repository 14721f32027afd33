"""The Swarm scheduler against the real one-node swarm, with the local stack image."""

import contextlib
import io
import operator
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker.errors
import pytest
from berth.runtime.client import docker_client
from berth.runtime.health import http_probe, http_ready
from berth.runtime.oneoff import run_oneoff
from berth.runtime.scheduler import ProcessSpec, SchedulerError, command_args, get_scheduler, service_name
from berth.runtime.swarm import SwarmScheduler
from django.conf import settings

from tests.conftest import wait_for

IMAGE = "berth/stack:bookworm"
WEB = "python3 -m http.server $PORT"
WORKER = "while true; do echo tick; sleep 1; done"


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None when there is none: a pid and its start name
    one process, even after the pid is used again."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# org.berth.test=1 marks test leftovers; the suite label keeps this module's cleanup away from services that
# other test modules, possibly running at the same time on this machine, have made. The owner label names the
# test process: the cleanup takes its own and those of a process that is gone (a killed run), never those of
# another test process of this run (test_oneoff.py shares the cleanup, and ran it on another worker while this
# module's test waited for its service: "does not exist")
OWNER_LABEL = "org.berth.test.owner"
OWNER = f"{os.getpid()}-{_process_start(os.getpid())}"
TEST_LABELS = {"org.berth.test": "1", "org.berth.test.suite": "runtime", OWNER_LABEL: OWNER}
TEST_FILTER = ["org.berth.test=1", "org.berth.test.suite=runtime"]


def _ours_or_left(labels: dict | None) -> bool:
    owner = (labels or {}).get(OWNER_LABEL, "")
    pid, _, started = owner.partition("-")
    return owner == OWNER or not pid.isdigit() or _process_start(int(pid)) != started


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def cleanup_leftovers(timeout: float = 60) -> None:
    """Remove every service, container and network this suite labelled, e.g. left by a killed earlier run."""
    client = docker_client()
    for service in client.api.services(filters={"label": TEST_FILTER}):
        if not _ours_or_left(service["Spec"].get("Labels")):
            continue
        try:
            client.api.remove_service(service["ID"])
        except docker.errors.NotFound:
            pass

    def containers() -> list[dict]:
        found = client.api.containers(all=True, filters={"label": TEST_FILTER})
        return [c for c in found if _ours_or_left(c.get("Labels"))]

    for container in containers():
        if "com.docker.swarm.task.id" not in container["Labels"]:
            try:
                client.api.remove_container(container["Id"], force=True)
            except docker.errors.NotFound:
                pass
    wait_for(lambda: not containers(), timeout=timeout, interval=0.2, message="test containers to go")
    # a network lingers briefly after its last container went
    deadline = time.monotonic() + 20
    for network in client.api.networks(filters={"label": TEST_FILTER}):
        if not _ours_or_left(network.get("Labels")):
            continue
        while True:
            try:
                client.api.remove_network(network["Id"])
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def clean_swarm():
    cleanup_leftovers()
    yield
    cleanup_leftovers()


@pytest.fixture(scope="session")
def cmd_image():
    """A local image with a CMD (the stack image has none), built without a registry."""
    client = docker_client()
    tag = f"berth-test/with-cmd:runtime-{os.getpid()}"  # another test process removes its own tag
    dockerfile = (
        b'FROM berth/stack:bookworm\nCMD ["sh", "-c", "echo from-cmd $GREETING; exec sleep ${SLEEP:-0}"]\n'
    )
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, labels=TEST_LABELS, rm=True, pull=False)
    yield tag
    try:
        client.images.remove(tag, force=True)
    except docker.errors.APIError:
        pass  # still used by a container the module finalizer has not removed yet; the next run rebuilds it


@pytest.fixture
def scheduler() -> SwarmScheduler:
    return SwarmScheduler(extra_labels=TEST_LABELS)


def spec_for(app: str, team: str, process: str = "web", **overrides) -> ProcessSpec:
    values = {
        "app": app,
        "team": team,
        "release": 1,
        "process": process,
        "image": IMAGE,
        "command": WEB if process == "web" else WORKER,
        "env": {"GREETING": "hello"},
        "replicas": 1,
    }
    values.update(overrides)
    return ProcessSpec(**values)


@pytest.fixture(scope="module")
def team_apps():
    """Two apps of one team: `a` with two web replicas and a worker, `b` with one web replica."""
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)
    team, a, b = unique("ts"), unique(), unique()
    specs = [
        spec_for(a, team, replicas=2, memory_mb=128, cpu=0.5, constraints=["node.role==manager"]),
        spec_for(a, team, "worker"),
        spec_for(b, team),
    ]
    for spec in specs:
        scheduler.ensure_process(spec)
    for spec in specs:
        scheduler.wait_running(
            app=spec.app, release=1, process=spec.process, replicas=spec.replicas, timeout=60
        )
    yield {"team": team, "a": a, "b": b}
    scheduler.remove(app=a)
    scheduler.remove(app=b)


pytestmark = pytest.mark.docker


def test_service_carries_labels_env_limits_and_policies(team_apps):
    app = team_apps["a"]
    service = docker_client().api.inspect_service(f"{app}-v1-web")
    spec = service["Spec"]
    assert spec["Labels"]["org.berth.app"] == app
    assert spec["Labels"]["org.berth.team"] == team_apps["team"]
    assert spec["Labels"]["org.berth.release"] == "1"
    assert spec["Labels"]["org.berth.process"] == "web"
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["Args"] == command_args(WEB)  # through the shell, exec-ed so SIGTERM reaches the app
    assert "Command" not in container  # the image's entrypoint (tini) stays
    assert set(container["Env"]) == {"GREETING=hello", "PORT=5000"}
    assert container["Labels"]["org.berth.app"] == app
    assert container["StopGracePeriod"] == 30 * 10**9
    assert task["Resources"]["Limits"] == {
        "MemoryBytes": 128 * 1024 * 1024,
        "NanoCPUs": 500_000_000,
        "Pids": settings.BERTH_PROCESS_PIDS_LIMIT,
    }
    assert task["RestartPolicy"]["Condition"] == "on-failure"
    assert task["RestartPolicy"]["Delay"] == 2 * 10**9
    assert task["Placement"]["Constraints"] == ["node.role==manager"]
    assert task["Placement"]["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.id"}}]
    assert task["LogDriver"]["Name"] == "json-file"
    assert task["LogDriver"]["Options"]["max-size"] == "10m"
    assert task["Networks"][0]["Aliases"] == [app]
    network = docker_client().api.inspect_network(task["Networks"][0]["Target"])
    assert network["Name"] == f"berth-team-{team_apps['team']}"
    assert network["Driver"] == "overlay" and network["Attachable"]
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    ports = spec["EndpointSpec"]["Ports"]
    assert ports == [{"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "host"}]
    assert spec["Mode"]["Replicated"]["Replicas"] == 2


def test_running_containers_get_the_memory_limit(team_apps):
    scheduler = SwarmScheduler()
    task = scheduler.tasks(app=team_apps["a"], process="web")[0]
    host_config = docker_client().api.inspect_container(task.container_id)["HostConfig"]
    assert host_config["Memory"] == 128 * 1024 * 1024
    assert host_config["NanoCpus"] == 500_000_000


def test_two_web_replicas_on_one_node_get_distinct_reachable_ports(team_apps):
    tasks = SwarmScheduler().tasks(app=team_apps["a"], release=1, process="web")
    assert len(tasks) == 2
    assert all(t.running for t in tasks)
    ports = {t.published_port for t in tasks}
    assert len(ports) == 2 and None not in ports
    # each task is reached at the address its node registered with: 127.0.0.1 for a swarm initialised on
    # loopback, the machine's own address for one `make up` made (docker swarm init --advertise-addr <it>)
    nodes = {node["ID"]: node["Status"]["Addr"] for node in docker_client().api.nodes()}
    for task in tasks:
        assert task.node_address == nodes[task.node_id]
        assert task.node_address not in (None, "", "0.0.0.0")
        assert http_ready(task.node_address, task.published_port, timeout=10)


def test_a_poll_of_tasks_does_not_ask_the_engine_for_its_info(team_apps, monkeypatch):
    # the engine's /info runs `runc --version` and `docker-init --version` each time: a deploy polls its tasks
    # several times a second, and the node's own id is needed only for a node that registered no address
    scheduler = SwarmScheduler()
    asked = []
    real_info = scheduler.api.info
    monkeypatch.setattr(scheduler.api, "info", lambda: asked.append(1) or real_info())
    tasks = scheduler.tasks(app=team_apps["a"], release=1)
    running = scheduler.wait_running(app=team_apps["b"], release=1, process="web", replicas=1, timeout=30)
    assert len(tasks) == 3 and running
    assert all(t.node_address for t in [*tasks, *running])
    assert asked == []


def test_tasks_report_container_start_and_no_restarts(team_apps):
    tasks = SwarmScheduler().tasks(app=team_apps["a"])
    assert sorted((t.process, t.slot) for t in tasks) == [("web", 1), ("web", 2), ("worker", 1)]
    for task in tasks:
        assert task.service == f"{team_apps['a']}-v1-{task.process}"
        assert task.app == team_apps["a"] and task.release == 1
        assert task.container_id and task.started_at and task.node_id
        assert task.restarts == 0 and task.error == "" and task.last_error == ""


def test_worker_has_no_port_or_alias_and_its_logs_are_readable(team_apps):
    scheduler = SwarmScheduler()
    (worker,) = scheduler.tasks(app=team_apps["a"], process="worker")
    assert worker.published_port is None
    spec = docker_client().api.inspect_service(worker.service)["Spec"]
    assert "PORT=5000" not in spec["TaskTemplate"]["ContainerSpec"]["Env"]
    assert not spec["TaskTemplate"]["Networks"][0].get("Aliases")
    assert "Ports" not in spec["EndpointSpec"]
    lines = wait_for(lambda: scheduler.task_logs(worker.id, tail=5), timeout=10, message="worker output")
    assert "tick" in lines
    assert len(lines) <= 5


def test_apps_of_one_team_reach_each_other_by_name(team_apps):
    lines = []
    probe = "; ".join(
        f"print('{app}', urllib.request.urlopen('http://{app}:5000', timeout=5).status)"
        for app in (team_apps["a"], team_apps["b"])
    )
    result = run_oneoff(
        app=team_apps["b"],
        team=team_apps["team"],
        release=1,
        image=IMAGE,
        command=f'python3 -c "import urllib.request; {probe}"',
        env={},
        on_line=lines.append,
        timeout=60,
        labels=TEST_LABELS,
    )
    assert result.exit_code == 0, lines
    assert lines == [f"{team_apps['a']} 200", f"{team_apps['b']} 200"]


def test_ensure_process_twice_changes_nothing(team_apps):
    app = team_apps["a"]
    api = docker_client().api
    before = api.inspect_service(f"{app}-v1-web")["Version"]["Index"]
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)
    spec = spec_for(
        app, team_apps["team"], replicas=2, memory_mb=128, cpu=0.5, constraints=["node.role==manager"]
    )
    scheduler.ensure_process(spec)
    assert api.inspect_service(f"{app}-v1-web")["Version"]["Index"] == before


def test_services_lists_what_runs(team_apps):
    services = SwarmScheduler().services(app=team_apps["a"])
    assert [(s.name, s.process, s.replicas, s.port) for s in services] == [
        (f"{team_apps['a']}-v1-web", "web", 2, 5000),
        (f"{team_apps['a']}-v1-worker", "worker", 1, None),
    ]
    assert all(s.team == team_apps["team"] and s.image == IMAGE and s.created_at for s in services)


def test_every_apps_web_tasks_are_read_at_once_as_each_apps_are(team_apps):
    scheduler = SwarmScheduler()
    every = scheduler.tasks_of_every_app(process="web")
    for app in (team_apps["a"], team_apps["b"]):
        one_by_one = scheduler.tasks(app=app, process="web")
        assert len(one_by_one) == (2 if app == team_apps["a"] else 1)
        by_id = operator.attrgetter("id")
        assert sorted((t for t in every if t.app == app), key=by_id) == sorted(one_by_one, key=by_id)
    assert {t.process for t in every} == {"web"}  # a's worker is not among them


def test_scale_up_and_down_keeps_the_first_task(scheduler):
    app, team = unique(), unique("ts")
    spec = spec_for(app, team, "worker")
    scheduler.ensure_process(spec)
    (first,) = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)

    scheduler.scale(app=app, release=1, process="worker", replicas=3)
    tasks = scheduler.wait_running(app=app, release=1, process="worker", replicas=3, timeout=60)
    assert len(tasks) == 3 and first.id in {t.id for t in tasks}

    scheduler.scale(app=app, release=1, process="worker", replicas=1)
    remaining = wait_for(
        lambda: (t := scheduler.tasks(app=app)) and len(t) == 1 and t,
        timeout=30,
        message="scale down to one task",
    )
    assert remaining[0].id == first.id and remaining[0].running
    assert scheduler.services(app=app)[0].replicas == 1


def test_ensure_process_rolls_a_changed_spec(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team, "worker"))
    (old,) = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    scheduler.ensure_process(spec_for(app, team, "worker", env={"GREETING": "bye"}))
    (new,) = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    assert new.id != old.id
    env = docker_client().api.inspect_container(new.container_id)["Config"]["Env"]
    assert "GREETING=bye" in env


def test_remove_deletes_services_and_waits_for_containers(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team))
    scheduler.ensure_process(spec_for(app, team, "worker"))
    scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    scheduler.wait_running(app=app, release=1, process="web", replicas=1, timeout=60)

    assert scheduler.remove(app=app, process="worker") == [f"{app}-v1-worker"]
    assert [s.process for s in scheduler.services(app=app)] == ["web"]

    assert scheduler.remove(app=app) == [f"{app}-v1-web"]
    api = docker_client().api
    assert scheduler.services(app=app) == [] and scheduler.tasks(app=app) == []
    assert api.containers(all=True, filters={"label": f"org.berth.app={app}"}) == []


def test_a_task_that_answers_counts_at_once_and_one_that_does_not_after_it_ran_a_moment(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team))
    asked = []

    def answers(task) -> bool:
        asked.append(task.id)
        return http_probe(task.node_address, task.published_port, timeout=0.5) == 200

    started = time.monotonic()
    (task,) = scheduler.wait_running(
        app=app, release=1, process="web", replicas=1, timeout=60, settle=40, answers=answers
    )
    assert time.monotonic() - started < 30  # its answer counted, not the 40 s of running it would need
    assert asked[-1] == task.id and http_probe(task.node_address, task.published_port) == 200
    started = time.monotonic()
    scheduler.wait_running(app=app, release=1, process="web", replicas=1, timeout=60, answers=lambda t: False)
    assert time.monotonic() - started >= 1.0  # no answer: seen running for the settle (1 s) first


def test_crash_loop_fails_wait_running_early_with_the_error(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team, command="echo boom-from-app; exit 1"))
    started = time.monotonic()
    with pytest.raises(SchedulerError) as raised:
        scheduler.wait_running(app=app, release=1, process="web", replicas=1, timeout=60)
    assert time.monotonic() - started < 30  # three failures, two seconds apart, not the whole timeout
    message = str(raised.value)
    assert f"{app}-v1-web: 0/1 replicas running" in message
    assert "non-zero exit (1)" in message
    assert "boom-from-app" in message
    (task,) = scheduler.tasks(app=app)
    assert task.restarts >= 2 and "non-zero exit" in task.last_error


def test_missing_image_fails_fast_with_the_reason(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team, "worker", image="berth-test/missing:1"))
    started = time.monotonic()
    with pytest.raises(SchedulerError, match="No such image: berth-test/missing:1") as raised:
        scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    assert time.monotonic() - started < 30
    assert "exit code" not in str(raised.value)


def test_unschedulable_process_times_out_with_the_reason(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team, "worker", constraints=["node.labels.berth-nowhere==1"]))
    started = time.monotonic()
    with pytest.raises(SchedulerError, match="no suitable node") as raised:
        scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=3)
    assert 3 <= time.monotonic() - started < 10
    # the message gives the time waited: the 3 s asked, or more when the machine is busy (4 s seen in make test)
    waited = re.search(r"0/1 replicas running after (\d+)s", str(raised.value))
    assert waited and 3 <= int(waited.group(1)) < 10, str(raised.value)


def test_app_that_never_binds_port_is_not_http_ready(scheduler):
    app, team = unique(), unique("ts")
    scheduler.ensure_process(spec_for(app, team, command="sleep 600"))
    (task,) = scheduler.wait_running(app=app, release=1, process="web", replicas=1, timeout=60)
    assert task.published_port  # Docker publishes the port whether or not the app listens
    assert not http_ready(task.node_address, task.published_port, timeout=3)


def test_no_command_runs_the_image_cmd(scheduler, cmd_image):
    app, team = unique(), unique("ts")
    spec = spec_for(
        app, team, "worker", image=cmd_image, command=None, env={"GREETING": "hi", "SLEEP": "600"}
    )
    scheduler.ensure_process(spec)
    (task,) = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
    assert (
        "Args"
        not in docker_client().api.inspect_service(task.service)["Spec"]["TaskTemplate"]["ContainerSpec"]
    )
    assert wait_for(lambda: scheduler.task_logs(task.id), timeout=10, message="output") == ["from-cmd hi"]


def test_missing_service_is_an_error(scheduler):
    with pytest.raises(SchedulerError, match="does not exist"):
        scheduler.wait_running(app=unique(), release=1, process="web", replicas=1, timeout=1)
    with pytest.raises(SchedulerError, match="does not exist"):
        scheduler.scale(app=unique(), release=1, process="web", replicas=2)


def test_leftover_of_a_killed_run_is_cleaned_and_another_test_processs_service_kept():
    api = docker_client().api
    parent = os.getppid()  # alive: the test run's process (xdist's controller, or the shell)
    owners = {
        "killed": "4194305-1",
        "another": f"{parent}-{_process_start(parent)}",
    }  # 4194305: above pid_max
    names = {}
    for who, owner in owners.items():
        names[who] = f"{unique()}-v1-web"
        api.create_service(
            {"ContainerSpec": {"Image": IMAGE, "Args": ["sleep", "600"]}},
            name=names[who],
            labels={**TEST_LABELS, OWNER_LABEL: owner, "org.berth.app": who},
        )
    try:
        cleanup_leftovers()
        with pytest.raises(docker.errors.NotFound):
            api.inspect_service(names["killed"])
        assert api.inspect_service(names["another"])["Spec"]["Labels"][OWNER_LABEL] == owners["another"]
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(names["another"])


def test_get_scheduler_is_swarm():
    assert isinstance(get_scheduler(), SwarmScheduler)


def test_unknown_scheduler_setting_is_refused(settings):
    settings.BERTH_SCHEDULER = "nomad"
    with pytest.raises(SchedulerError, match="unknown scheduler 'nomad'"):
        get_scheduler()


def test_concurrent_ensure_process_makes_one_service(scheduler):
    app, team = unique(), unique("ts")
    spec = spec_for(app, team, "worker")
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(
            pool.map(lambda _: SwarmScheduler(extra_labels=TEST_LABELS).ensure_process(spec), range(4))
        )
    assert len(set(ids)) == 1
    assert [s.id for s in scheduler.services(app=app)] == ids[:1]
    assert len(docker_client().api.networks(filters={"label": f"org.berth.team={team}"})) == 1


@pytest.mark.parametrize("app", ["Upper", "under_score", "-dash", "a" * 60])
def test_invalid_names_are_refused(app):
    with pytest.raises(SchedulerError):
        service_name(app=app, release=1, process="web")

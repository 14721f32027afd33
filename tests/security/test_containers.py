"""Containers: a tenant's code runs as root inside its container, so the container is the fence. App processes
(Swarm tasks), release-phase and one-off runs keep only the capabilities an ordinary web app needs, cannot gain
privileges through setuid binaries, and have a pids and a memory limit; builds have memory and CPU limits.

Checked on real containers: the engine's view (`docker inspect`) and the process's own (/proc/self/status,
its cgroup's pids.max and memory limit)."""

import secrets
import time
import uuid

import docker.errors
import pytest
from berth.builds.builder import docker_build
from berth.builds.buildpacks import detect
from berth.builds.errors import BuildError
from berth.builds.stack import stack_build
from berth.runtime.client import docker_client
from berth.runtime.oneoff import run_oneoff
from berth.runtime.scheduler import APP_CAPABILITIES, ProcessSpec
from berth.runtime.swarm import SwarmScheduler

from tests.conftest import wait_for

pytestmark = pytest.mark.docker

IMAGE = "berth/stack:bookworm"
SUITE = "security-containers"
LABELS = {"org.berth.test": "1", "org.berth.test.suite": SUITE}
LABEL_FILTER = [f"{k}={v}" for k, v in LABELS.items()]
# The kernel's capability numbers (linux/capability.h) of what an app keeps.
CAPABILITY_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_BIND_SERVICE": 10,
}
# What the process reports about itself: no-new-privileges, its capabilities, its cgroup's limits (v1 or v2).
SELF_REPORT = (
    "grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status; "
    "echo pids.max: $(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max); "
    "echo memory: $(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
)


def _expected_capabilities() -> str:
    mask = sum(1 << CAPABILITY_BITS[name] for name in APP_CAPABILITIES)
    return f"{mask:016x}"


def _report(lines: list[str]) -> dict[str, str]:
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines) if value}


def _cleanup() -> None:
    client = docker_client()
    for service in client.api.services(filters={"label": LABEL_FILTER}):
        try:
            client.api.remove_service(service["ID"])
        except docker.errors.NotFound:
            pass
    for container in client.api.containers(all=True, filters={"label": LABEL_FILTER}):
        try:
            client.api.remove_container(container["Id"], force=True)
        except docker.errors.APIError:
            pass  # a task's container Swarm is removing itself
    # the teams' networks too (each test makes teams of its own): a network leaves once its last task has
    deadline = time.monotonic() + 15
    while networks := client.api.networks(filters={"label": LABEL_FILTER}):
        for network in networks:
            try:
                client.api.remove_network(network["Id"])
            except docker.errors.APIError:
                pass  # still attached: tried again below, or by the next run's cleanup
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def clean():
    _cleanup()
    yield
    _cleanup()


def _engine_sets_no_new_privileges() -> bool:
    return any(
        "no-new-privileges" in option for option in docker_client().info().get("SecurityOptions") or []
    )


@pytest.fixture(scope="module")
def swarm_task():
    """One worker process run as Berth runs any app process, with no memory set on its process type."""
    scheduler = SwarmScheduler(extra_labels=LABELS)
    app, team = f"s-{secrets.token_hex(4)}", f"st-{secrets.token_hex(3)}"
    spec = ProcessSpec(
        app=app,
        team=team,
        release=1,
        process="worker",
        image=IMAGE,
        command=f"{SELF_REPORT}; exec sleep 300",
        env={},
        replicas=1,
    )
    scheduler.ensure_process(spec)
    try:
        [task] = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
        lines = wait_for(
            lambda: (
                (found := scheduler.task_logs(task.id)) and any("memory" in line for line in found) and found
            ),
            timeout=30,
            message="the task's report",
        )
        yield task, _report(lines)
    finally:
        scheduler.remove(app=app)


def test_a_swarm_task_keeps_only_the_app_capabilities(swarm_task):
    task, report = swarm_task
    host = docker_client().api.inspect_container(task.container_id)["HostConfig"]
    assert host["CapDrop"] == ["ALL"], host["CapDrop"]
    assert sorted(host["CapAdd"] or []) == sorted(APP_CAPABILITIES)
    assert report["CapEff"] == _expected_capabilities(), report
    assert report["CapBnd"] == _expected_capabilities(), report


def test_a_swarm_task_has_the_pids_limit_and_the_default_memory_limit(swarm_task, settings):
    task, report = swarm_task
    host = docker_client().api.inspect_container(task.container_id)["HostConfig"]
    assert host["PidsLimit"] == settings.BERTH_PROCESS_PIDS_LIMIT
    assert host["Memory"] == settings.BERTH_PROCESS_MEMORY_MB * 1024 * 1024
    assert report["pids.max"] == str(settings.BERTH_PROCESS_PIDS_LIMIT), report
    assert report["memory"] == str(settings.BERTH_PROCESS_MEMORY_MB * 1024 * 1024), report


def test_a_swarm_task_cannot_gain_privileges(swarm_task):
    # Swarm has no per-service no-new-privileges before API 1.44 (this engine speaks 1.41): `make up` sets it for
    # the whole engine in /etc/docker/daemon.json, which takes effect when the engine starts.
    if not _engine_sets_no_new_privileges():
        pytest.skip(
            "this engine runs without no-new-privileges in daemon.json (make up sets it; restart dockerd)"
        )
    _task, report = swarm_task
    assert report["NoNewPrivs"] == "1", report


def test_a_process_types_memory_overrides_the_default(settings):
    scheduler = SwarmScheduler(extra_labels=LABELS)
    app, team = f"s-{secrets.token_hex(4)}", f"st-{secrets.token_hex(3)}"
    spec = ProcessSpec(
        app=app,
        team=team,
        release=1,
        process="worker",
        image=IMAGE,
        command="sleep 300",
        env={},
        replicas=1,
        memory_mb=96,
    )
    scheduler.ensure_process(spec)
    try:
        [task] = scheduler.wait_running(app=app, release=1, process="worker", replicas=1, timeout=60)
        host = docker_client().api.inspect_container(task.container_id)["HostConfig"]
        assert host["Memory"] == 96 * 1024 * 1024
        assert host["PidsLimit"] == settings.BERTH_PROCESS_PIDS_LIMIT
    finally:
        scheduler.remove(app=app)


def _run(command: str, **kwargs):
    lines: list[str] = []
    values = {
        "app": f"o-{secrets.token_hex(4)}",
        "team": f"ot-{secrets.token_hex(3)}",
        "release": 2,
        "image": IMAGE,
        "env": {},
        "labels": LABELS,
        "on_line": lines.append,
        "timeout": 120,
    }
    values.update(kwargs)
    result = run_oneoff(command=command, **values)
    return result, lines


def test_a_one_off_run_has_no_new_privileges_the_app_capabilities_and_limits(settings):
    result, lines = _run(SELF_REPORT)
    assert result.exit_code == 0, lines
    report = _report(lines)
    assert report["NoNewPrivs"] == "1", report
    assert report["CapEff"] == _expected_capabilities(), report
    assert report["CapBnd"] == _expected_capabilities(), report
    assert report["pids.max"] == str(settings.BERTH_PROCESS_PIDS_LIMIT), report
    assert report["memory"] == str(settings.BERTH_PROCESS_MEMORY_MB * 1024 * 1024), report


def test_a_one_off_runs_memory_comes_from_its_process_type():
    result, lines = _run(SELF_REPORT, memory_mb=80)
    assert _report(lines)["memory"] == str(80 * 1024 * 1024), lines


FORK_BOMB = """
import os, time
forked = 0
try:
    while forked < 100:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forked += 1
except OSError as exc:
    print("refused:", exc.strerror)
print("forked:", forked)
"""


def test_a_fork_bomb_in_a_one_off_run_stops_at_the_pids_limit(settings):
    settings.BERTH_PROCESS_PIDS_LIMIT = 32
    result, lines = _run(f"python3 -c '{FORK_BOMB}'")
    report = _report(lines)
    assert int(report["forked"]) < 32, lines  # the limit counts every process and thread of the container
    assert report["refused"] == "Resource temporarily unavailable", lines


def test_a_one_off_run_cannot_make_device_nodes_or_raw_sockets():
    result, lines = _run(
        "mknod /tmp/disk b 8 0 2>&1 && echo mknod-worked; "
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)' 2>&1 | tail -1"
    )
    assert "mknod-worked" not in lines, lines
    assert any("Operation not permitted" in line for line in lines), lines


@pytest.fixture(scope="module")
def stack():
    stack_build("base", echo=lambda line: None)


def test_a_build_that_needs_more_than_the_build_memory_limit_fails_with_a_clear_line(
    stack, settings, tmp_path
):
    settings.BERTH_BUILD_MEMORY_MB = 96
    (tmp_path / "Dockerfile").write_text(
        "FROM berth/stack:bookworm\n"
        # 400 MB, touched page by page so that it is really used; the marker keeps the step out of the cache
        f'RUN echo {uuid.uuid4().hex} && python3 -c "b = bytearray(400 * 1024 * 1024); '
        "b[::4096] = b'x' * len(b[::4096]); print('allocated')\"\n"
    )
    lines: list[str] = []
    tag = f"berth-test/security-oom:{uuid.uuid4().hex[:8]}"
    with pytest.raises(BuildError) as caught:
        docker_build(
            source_dir=tmp_path,
            tag=tag,
            buildpack=detect(tmp_path),
            on_line=lines.append,
            ca_bundle=None,
            timeout=300,
            labels=LABELS,
        )
    assert "allocated" not in lines
    assert str(caught.value) == lines[-1]
    assert lines[-1] == (
        "error: the step was killed: it most likely needed more than the build's memory limit of 96 MB "
        "(BERTH_BUILD_MEMORY_MB)"
    ), lines[-3:]


def test_a_build_within_the_limits_builds_and_its_steps_see_them(stack, settings, tmp_path):
    settings.BERTH_BUILD_MEMORY_MB = 256
    settings.BERTH_BUILD_CPUS = 1
    (tmp_path / "Dockerfile").write_text(
        "FROM berth/stack:bookworm\n"
        f"RUN echo {uuid.uuid4().hex} && python3 -c \"b = bytearray(64 * 1024 * 1024); print('allocated')\"\n"
        "RUN echo cpus: $(nproc) && echo memory: $(cat /sys/fs/cgroup/memory.max 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\n"
    )
    lines: list[str] = []
    tag = f"berth-test/security-oom:{uuid.uuid4().hex[:8]}"
    try:
        docker_build(
            source_dir=tmp_path,
            tag=tag,
            buildpack=detect(tmp_path),
            on_line=lines.append,
            ca_bundle=None,
            timeout=300,
            labels=LABELS,
        )
        assert "allocated" in lines
        report = _report(lines)
        assert report["memory"] == str(256 * 1024 * 1024), lines
        if docker_client().info()["NCPU"] > 1:
            assert report["cpus"] == "1", lines  # the build's steps see only the CPUs they may use
    finally:
        try:
            docker_client().images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass

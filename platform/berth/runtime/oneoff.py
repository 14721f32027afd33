"""One-off runs: a container of a release's image on the manager, for the Procfile `release:` phase and `berth run`.

`docker run` semantics through the SDK: the image's entrypoint runs the command (`sh -c` for a string), the
container joins the team's overlay network (so it reaches the team's apps by name), its output is streamed line by
line while it runs, and the exit code is returned. A run is not a Swarm service: services restart what exits.
It gets an app container's limits: no new privileges, APP_CAPABILITIES only, the pids and memory limits.
"""

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker.errors
import requests
from docker.types import LogConfig

from berth.runtime.client import docker_client
from berth.runtime.scheduler import (
    APP_CAPABILITIES,
    LABEL_APP,
    LABEL_ONEOFF,
    LABEL_RELEASE,
    LABEL_TEAM,
    NO_NEW_PRIVILEGES,
    SchedulerError,
    installation_labels,
    is_ours,
    process_memory_mb,
    process_pids_limit,
    service_name,
)
from berth.runtime.swarm import LOG_OPTIONS, team_network_ensure

KILLED_EXIT_CODE = 137  # what a shell reports for SIGKILL
SILENT_READ_TIMEOUT_S = 24 * 3600


@dataclass
class OneOffResult:
    exit_code: int | None  # None while a detached run goes on
    container_id: str
    timed_out: bool = False


class _LineSplitter:
    """Docker streams output in arbitrary chunks; callers want whole lines."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.pending = b""

    def feed(self, chunk: bytes) -> None:
        self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.on_line(line.rstrip(b"\r").decode(errors="replace"))

    def close(self) -> None:
        if self.pending:
            self.on_line(self.pending.decode(errors="replace"))
            self.pending = b""


def run_oneoff(
    *,
    app: str,
    team: str,
    release: int,
    image: str,
    command: str | None,
    env: dict[str, str],
    detach: bool = False,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    memory_mb: int | None = None,
    labels: dict[str, str] | None = None,
) -> OneOffResult:
    """Run `command` in a new container of `image` and, unless `detach`, stream its output and return its exit code.

    After `timeout` seconds the container is killed (exit code 137, `timed_out` set). An attached run's container
    is removed once its exit code is read; a detached one stays for `oneoff_logs` until `oneoff_remove`.
    """
    # Reads block while the run is silent, so the stream gets a long read timeout (the client default is 60 s).
    client = docker_client(timeout=int(timeout) + 30 if timeout is not None else SILENT_READ_TIMEOUT_S)
    extra = dict(labels or {})
    network = team_network_ensure(team=team, labels=extra, client=client)
    name = f"{service_name(app=app, release=release, process='run')}-{secrets.token_hex(3)}"
    try:
        container = client.containers.create(
            image,
            command=["sh", "-c", command] if command else None,
            name=name,
            environment=dict(env),
            labels={
                LABEL_APP: app,
                LABEL_TEAM: team,
                LABEL_RELEASE: str(int(release)),
                LABEL_ONEOFF: "1",
                **installation_labels(),
                **extra,
            },
            network=network,
            log_config=LogConfig(type="json-file", config=dict(LOG_OPTIONS)),
            mem_limit=f"{process_memory_mb(memory_mb)}m",
            pids_limit=process_pids_limit(),
            cap_drop=["ALL"],
            cap_add=list(APP_CAPABILITIES),
            security_opt=[NO_NEW_PRIVILEGES],
            detach=True,
        )
    except docker.errors.APIError as exc:
        raise SchedulerError(f"one-off run of {app} v{release}: {exc.explanation or exc}") from exc

    timer = None
    timed_out = threading.Event()
    if timeout is not None:

        def kill() -> None:
            timed_out.set()
            try:  # its own client: the caller's thread is blocked reading the log stream
                docker_client().api.kill(container.id)
            except docker.errors.APIError:
                pass  # it ended meanwhile

        timer = threading.Timer(timeout, kill)
        timer.daemon = True

    try:
        container.start()
    except docker.errors.APIError as exc:
        container.remove(force=True)
        raise SchedulerError(f"one-off run of {app} v{release}: {exc.explanation or exc}") from exc
    if timer:
        timer.start()
    if detach:
        return OneOffResult(exit_code=None, container_id=container.id)

    try:
        splitter = _LineSplitter(on_line or (lambda line: None))
        received = 0
        # follow ends when the container stops; json-file keeps what was printed before we attached
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            received += len(chunk)
            splitter.feed(chunk)
        exit_code = container.wait()["StatusCode"]
        # Docker 20.10 can end the follow stream before it wrote a last line that had no newline; the stored
        # log has it, and what we streamed is a prefix of the stored log.
        stored = container.logs(stdout=True, stderr=True)
        if len(stored) > received:
            splitter.feed(stored[received:])
        splitter.close()
    finally:
        if timer:
            timer.cancel()
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    return OneOffResult(exit_code=exit_code, container_id=container.id, timed_out=timed_out.is_set())


def oneoff_logs(container_id: str, tail: int | str = "all") -> list[str]:
    """What a (detached) one-off run printed so far, stdout and stderr interleaved."""
    try:
        raw = docker_client().api.logs(container_id, stdout=True, stderr=True, tail=tail)
    except docker.errors.NotFound:
        raise SchedulerError(f"no one-off run {container_id[:12]}") from None
    return raw.decode(errors="replace").splitlines()


def oneoff_wait(container_id: str, timeout: float) -> int:
    """Block until a detached run exits; its exit code."""
    client = docker_client(timeout=int(timeout) + 5)
    deadline = time.monotonic() + timeout
    try:
        return client.api.wait(container_id, timeout=max(1, int(deadline - time.monotonic())))["StatusCode"]
    except docker.errors.NotFound:
        raise SchedulerError(f"no one-off run {container_id[:12]}") from None
    except requests.exceptions.RequestException as exc:
        raise SchedulerError(f"one-off run {container_id[:12]} still running after {timeout:.0f}s") from exc


def oneoff_remove(container_id: str) -> None:
    try:
        docker_client().api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass


def oneoff_prune(*, older_than: float, app: str | None = None) -> list[str]:
    """Remove one-off containers created more than `older_than` seconds ago, running or not: attached runs whose
    caller died, and detached runs nobody removed. Returns their ids."""
    client = docker_client()
    labels = [f"{LABEL_ONEOFF}=1"] + ([f"{LABEL_APP}={app}"] if app else [])
    cutoff = time.time() - older_than
    removed = []
    for container in client.api.containers(all=True, filters={"label": labels}):
        if container["Created"] <= cutoff and is_ours(container.get("Labels")):
            try:
                client.api.remove_container(container["Id"], force=True)
                removed.append(container["Id"])
            except docker.errors.NotFound:
                pass
    return removed


def oneoff_follow(container_id: str, *, app: str) -> Iterator[str]:
    """The run's output line by line until it exits (what it printed before is replayed first)."""
    _check_run_id(container_id, app=app)
    container = _oneoff_container(docker_client(timeout=SILENT_READ_TIMEOUT_S), container_id, app=app)
    splitter_lines: list[str] = []
    splitter = _LineSplitter(splitter_lines.append)
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        splitter.feed(chunk)
        yield from splitter_lines
        splitter_lines.clear()
    splitter.close()
    yield from splitter_lines


def oneoff_status(container_id: str, *, app: str) -> dict:
    """{"id", "status": "running"|"exited", "exit_code"} of one of `app`'s runs (SchedulerError if not its run)."""
    _check_run_id(container_id, app=app)
    container = _oneoff_container(docker_client(), container_id, app=app)
    state = container.attrs.get("State", {})
    running = state.get("Running", False) or state.get("Status") == "created"
    return {
        "id": container.id[:12],
        "status": "running" if running else "exited",
        "exit_code": None if running else state.get("ExitCode"),
    }


def _check_run_id(container_id: str, *, app: str) -> None:
    if not 12 <= len(container_id) <= 64 or not all(c in "0123456789abcdef" for c in container_id):
        raise SchedulerError(f"no run {container_id[:64]!r} of {app}")


def _oneoff_container(client, container_id: str, *, app: str):
    try:
        container = client.containers.get(container_id)
    except docker.errors.NotFound:
        raise SchedulerError(f"no run {container_id[:12]} of {app}") from None
    labels = container.labels or {}
    if labels.get(LABEL_APP) != app or labels.get(LABEL_ONEOFF) != "1" or not is_ours(labels):
        raise SchedulerError(f"no run {container_id[:12]} of {app}")
    return container

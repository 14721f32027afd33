"""The scheduler seam: what the deploy orchestration asks of whatever runs a release's processes.

Plain dataclasses in and out (no models), so the layers above can be tested against a double and the one real
backend, Swarm (`berth.runtime.swarm`), is tested against the real engine. `get_scheduler()` picks the backend
named by the `BERTH_SCHEDULER` setting (default "swarm").
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils.module_loading import import_string

LABEL_APP = "org.berth.app"
LABEL_TEAM = "org.berth.team"
LABEL_RELEASE = "org.berth.release"
LABEL_PROCESS = "org.berth.process"
LABEL_SPEC = "org.berth.spec"  # hash of what ensure_process asked for, so an unchanged spec is not re-rolled
LABEL_ONEOFF = "org.berth.oneoff"
# a rolling restart starts a second service of the same release and process beside the first: its generation
LABEL_GENERATION = "org.berth.generation"
# which installation made it (settings.BERTH_INSTALLATION_ID): one engine may hold another install's leftovers
LABEL_INSTALLATION = "org.berth.installation"
# a one-off whose runner writes its output into the app's log itself (a scheduled job's run): the shipper leaves it
LABEL_LOGGED_BY_RUNNER = "org.berth.logged-by-runner"

WEB_PROCESS = "web"
DEFAULT_PORT = 5000

# Swarm service names must be valid DNS labels (they resolve on the overlay): at most 63 characters.
_NAME_PART = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")  # fullmatch: `$` accepts a trailing newline


# What every app container (a Swarm task, a release phase, a one-off run) keeps of root's powers: all are dropped,
# then these come back. Docker's default set also holds MKNOD (device nodes), NET_RAW (raw sockets: forged
# packets on the team's network, ARP spoofing), SYS_CHROOT, SETFCAP and SETPCAP (handing capabilities on),
# AUDIT_WRITE and FSETID, which an ordinary web app never needs. What is kept is what common images do as root:
APP_CAPABILITIES = (
    "CAP_CHOWN",  # entrypoints chown their data and cache folders (nginx's /var/lib/nginx, postgres' data)
    "CAP_DAC_OVERRIDE",  # root reading and writing files the app's own user owns, as images expect of root
    "CAP_FOWNER",  # chmod and utime on such files (pip, npm and their caches)
    "CAP_SETUID",  # dropping to an unprivileged user: gosu, su-exec, nginx's and gunicorn's workers
    "CAP_SETGID",
    "CAP_NET_BIND_SERVICE",  # an image that listens on 80 or 443 inside its container
    "CAP_KILL",  # a master process signalling workers that run as another user
)
# Per container; Swarm services cannot ask for it before Docker API 1.44 (Docker 20.10 speaks 1.41), so there
# `make up` sets "no-new-privileges" for the whole engine in /etc/docker/daemon.json (deploy/lib.sh).
NO_NEW_PRIVILEGES = "no-new-privileges:true"


def process_memory_mb(memory_mb: int | None) -> int:
    """The memory limit of an app container: its process type's (Formation.memory_mb), else the default."""
    return memory_mb or settings.BERTH_PROCESS_MEMORY_MB


def process_pids_limit() -> int:
    """How many processes and threads one app container may hold: a fork bomb stops there, not at the node's."""
    return settings.BERTH_PROCESS_PIDS_LIMIT


def installation_labels() -> dict[str, str]:
    """The label every service, container, network and image this installation makes carries."""
    return {LABEL_INSTALLATION: settings.BERTH_INSTALLATION_ID}


def is_ours(labels: dict[str, str] | None) -> bool:
    """Whether a Docker object with these labels belongs to this installation.

    The rule: labelled with our id, or not labelled with any (made before installations had ids: an upgrade
    adopts its running apps instead of orphaning them). Labelled with another id: another install's, never
    shown, followed, routed or removed here (`manage.py doctor` reports them).
    """
    owner = (labels or {}).get(LABEL_INSTALLATION)
    return not owner or owner == settings.BERTH_INSTALLATION_ID


class SchedulerError(RuntimeError):
    """Something the scheduler could not do; the message is meant for the person deploying."""


@dataclass
class ProcessSpec:
    """One process type of one release: `<app>-v<release>-<process>` with `replicas` copies."""

    app: str
    team: str
    release: int
    process: str
    image: str
    command: str | None  # run by `sh -c` through the image's entrypoint; None runs the image's CMD
    env: dict[str, str]
    replicas: int
    memory_mb: int | None = None
    cpu: float | None = None
    port: int | None = DEFAULT_PORT  # only the web process gets PORT and a published port
    constraints: list[str] = field(default_factory=list)
    generation: int = 0  # 0 for the release's first service; a restart adds one

    @property
    def service_name(self) -> str:
        return service_name(
            app=self.app, release=self.release, process=self.process, generation=self.generation
        )

    @property
    def is_web(self) -> bool:
        return self.process == WEB_PROCESS

    @property
    def container_port(self) -> int | None:
        return self.port if self.is_web else None


@dataclass
class TaskInfo:
    """One task (one container) of a service, as the scheduler last saw it."""

    id: str
    service: str
    app: str
    release: int
    process: str
    slot: int | None
    node_id: str
    node_address: str | None
    state: str
    desired_state: str
    published_port: int | None
    container_id: str | None
    started_at: datetime | None
    error: str  # this task's own error, "" when none
    last_error: str  # this task's error or, failing that, the latest one of an earlier task in its slot
    restarts: int  # earlier tasks of the same slot (Swarm keeps a bounded history, see task_history_limit)
    generation: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"


@dataclass
class ServiceInfo:
    """One process type of one release as it runs: what `berth ps` shows per service."""

    id: str
    name: str
    app: str
    team: str
    release: int
    process: str
    image: str
    replicas: int
    port: int | None
    created_at: datetime | None
    updated_at: datetime | None
    generation: int = 0


def service_name(*, app: str, release: int, process: str, generation: int = 0) -> str:
    for what, value in (("app", app), ("process", process)):
        if not _NAME_PART.fullmatch(value):
            raise SchedulerError(f"invalid {what} name {value!r}: use lowercase letters, digits and dashes")
    name = f"{app}-v{int(release)}-{process}"
    if generation:
        name += f"-g{int(generation)}"
    if len(name) > 63:
        raise SchedulerError(f"service name {name!r} is longer than 63 characters")
    return name


def team_network_name(team: str) -> str:
    if not _NAME_PART.fullmatch(team):
        raise SchedulerError(f"invalid team name {team!r}: use lowercase letters, digits and dashes")
    return f"berth-team-{team}"


class Scheduler(ABC):
    """Runs each process type of a release as a set of replicas reachable on published ports."""

    @abstractmethod
    def ensure_process(self, spec: ProcessSpec) -> str:
        """Create the process's service, or update it to match `spec`. Returns the service id."""

    @abstractmethod
    def tasks(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[TaskInfo]:
        """The newest task of each slot of the matching services."""

    @abstractmethod
    def tasks_of_every_app(self, *, process: str) -> list[TaskInfo]:
        """The newest task of each slot of every app's services of that process type, read at once: what the
        watcher compares with the router for hundreds of apps without a call per app."""

    @abstractmethod
    def wait_running(
        self,
        *,
        app: str,
        release: int,
        process: str,
        replicas: int,
        timeout: float,
        generation: int = 0,
        answers: Callable[[TaskInfo], bool] | None = None,
    ) -> list[TaskInfo]:
        """Block until `replicas` tasks run (web: with a published port); raise SchedulerError otherwise.

        A task counts once it has run for a moment (a process that exits at once is reported running by Swarm
        for a moment), or as soon as `answers` says it does (a web process answering HTTP is up)."""

    @abstractmethod
    def scale(self, *, app: str, release: int, process: str, replicas: int, generation: int = 0) -> None: ...

    @abstractmethod
    def remove(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[str]:
        """Remove the matching services and wait (bounded) until their containers are gone. Returns names."""

    @abstractmethod
    def services(self, *, app: str) -> list[ServiceInfo]: ...

    @abstractmethod
    def task_logs(self, task_id: str, tail: int = 100) -> list[str]: ...

    def spec_matches(self, spec: ProcessSpec) -> bool | None:
        """Whether spec's service runs exactly `spec`, replicas aside (None: no such service, or cannot tell)."""
        return None

    def image_has_command(self, image: str) -> bool | None:
        """Whether `image` runs a program when given no command (None: cannot tell, e.g. not on this node)."""
        return None


SCHEDULERS: dict[str, Callable[[], Scheduler]] = {}


# The backends Berth ships, by name: dotted paths imported when first asked for, as Django loads its own backends,
# so this interface never imports its implementations (they import it).
SCHEDULER_BACKENDS = {
    "swarm": "berth.runtime.swarm.SwarmScheduler",
    "memory": "berth.runtime.memory.InMemoryScheduler",
}


def register_scheduler(name: str):
    def register(factory: Callable[[], Scheduler]):
        SCHEDULERS[name] = factory
        return factory

    return register


def get_scheduler() -> Scheduler:
    """The scheduler named by settings.BERTH_SCHEDULER ("swarm" unless set)."""
    name = getattr(settings, "BERTH_SCHEDULER", None) or "swarm"
    factory = SCHEDULERS.get(name)
    if factory is None and name in SCHEDULER_BACKENDS:
        factory = import_string(SCHEDULER_BACKENDS[name])
    if factory is None:
        known = ", ".join(sorted(set(SCHEDULERS) | set(SCHEDULER_BACKENDS)))
        raise SchedulerError(f"unknown scheduler {name!r}; known: {known}")
    return factory()


def command_args(command: str) -> list[str]:
    """The argv that runs a Procfile command line through sh, as Heroku does (behind the image's tini).

    A simple command is `exec`ed so it replaces the shell and gets SIGTERM from tini itself: dash does not exec
    the last command of `sh -c` on its own, and would leave the app to be killed after the stop grace period.
    A command with shell operators or leading variable assignments is left as written.
    """
    simple = not re.search(r"[;&|`\n]|\$\(|^\s*\w+=", command)
    return ["/bin/sh", "-c", f"exec {command.strip()}" if simple else command]

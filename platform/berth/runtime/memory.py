"""The in-memory scheduler: the whole Scheduler seam held in this process, for fast tests of the deploys above it.

No container runs. What a task does is written down per command (or per image) as a `Program`: by default it
serves HTTP, so each web task answers Berth's readiness check (berth.runtime.health) from a real little server on
127.0.0.1 and the roll-out code runs unchanged. A `Program` may instead stay silent on its port, crash in a loop,
or exit right after it was seen running, which are the ways a release fails to boot.

Every InMemoryScheduler() speaks to one engine, this module's, as every SwarmScheduler() speaks to one swarm; a
test gives its own `MemoryEngine` so tests share nothing. The engine keeps a `journal` of what was asked of it, in
order, so a test can check what happened before what. Swarm itself is tested against the real engine.
"""

import dataclasses
import itertools
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from berth.runtime.oneoff import OneOffResult
from berth.runtime.scheduler import (
    ProcessSpec,
    Scheduler,
    SchedulerError,
    ServiceInfo,
    TaskInfo,
    process_memory_mb,
    register_scheduler,
    service_name,
)

LOOPBACK = "127.0.0.1"
NODE_ID = "memory"
# the failed tasks a crashing slot shows: as many as SwarmScheduler.wait_running waits for before it gives up
CRASH_FAILURES = 3


class Boot(StrEnum):
    """How a task of a program behaves once started."""

    SERVE = "serve"  # runs; a web task answers every request with 200 on its port
    SILENT = "silent"  # runs, but nothing answers on its port: an app that never listens on $PORT
    CRASH = "crash"  # exits non-zero at once, and again each time it is restarted
    EXIT = "exit"  # seen running once (by wait_running), then exits before it ever answered


@dataclass(frozen=True)
class Program:
    """What runs in a container of the in-memory engine, looked up by its command, else by its image."""

    boot: Boot = Boot.SERVE
    lines: tuple[str, ...] = ()  # what it prints: its tasks' logs, a one-off run's output
    exit_code: int = 0  # how a one-off run of it ends (a crashing task exits 1 unless this says otherwise)
    has_command: bool = True  # as an image: whether it runs something when it is given no command


class _Listener:
    """What a web task holds on its published port: a server answering 200, or a bound socket that refuses."""

    def __init__(self, *, answer: bytes | None) -> None:
        self.server: ThreadingHTTPServer | None = None
        self.socket: socket.socket | None = None
        if answer is None:
            # bound but not listening: the port stays this task's and every connection to it is refused
            self.socket = socket.socket()
            self.socket.bind((LOOPBACK, 0))
            self.port = self.socket.getsockname()[1]
            return
        self.server = _AnsweringServer((LOOPBACK, 0), _Answer)
        self.server.answer = answer
        self.port = self.server.server_address[1]
        # a short poll, so close() (server.shutdown waits for the loop to notice) takes milliseconds
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.socket is not None:
            self.socket.close()


class _AnsweringServer(ThreadingHTTPServer):
    daemon_threads = True
    answer = b""


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.server.answer
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@dataclass
class _Task:
    id: str
    slot: int
    state: str
    desired_state: str = "running"
    error: str = ""
    started_at: datetime | None = None
    listener: _Listener | None = None
    exits: bool = False  # Boot.EXIT: ends as soon as wait_running has reported it running

    @property
    def port(self) -> int | None:
        return self.listener.port if self.listener else None

    def stop(self, *, state: str = "shutdown", error: str = "") -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.state, self.desired_state, self.error = state, "shutdown", error or self.error


@dataclass
class _Service:
    id: str
    spec: ProcessSpec
    program: Program
    created_at: datetime
    updated_at: datetime
    slots: dict[int, list[_Task]] = field(default_factory=dict)  # each slot's tasks, oldest first

    @property
    def name(self) -> str:
        return self.spec.service_name

    def newest(self) -> list[_Task]:
        return [history[-1] for _, history in sorted(self.slots.items())]


@dataclass
class MemoryEngine:
    """The state of one in-memory engine: its services, the programs it knows and the journal of what it did."""

    services: dict[str, _Service] = field(default_factory=dict)
    programs: dict[str, Program] = field(default_factory=dict)  # by command or image; others serve
    journal: list[tuple] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def close(self) -> None:
        """Stop every task (their servers and sockets) and forget every service."""
        with self.lock:
            for service in self.services.values():
                for history in service.slots.values():
                    for task in history:
                        task.stop()
            self.services.clear()


_ENGINE = MemoryEngine()


def _now() -> datetime:
    return datetime.now(UTC)


def _template(spec: ProcessSpec) -> tuple:
    """What makes a service's tasks what they are: everything of the spec but its replica count (Swarm's spec
    hash covers the same), so a change of any of it replaces the tasks and a change of replicas keeps them."""
    return (
        spec.team,
        spec.image,
        spec.command,
        tuple(sorted(spec.env.items())),
        process_memory_mb(spec.memory_mb),
        spec.cpu,
        spec.container_port,
        tuple(spec.constraints),
    )


@register_scheduler("memory")
class InMemoryScheduler(Scheduler):
    """The Scheduler seam in memory: services and their tasks, scale, remove, logs, with tasks that really answer
    HTTP on 127.0.0.1 (or fail the ways `Program` describes). Given no engine, it uses this module's one."""

    def __init__(self, *, engine: MemoryEngine | None = None) -> None:
        self.engine = engine or _ENGINE

    @property
    def programs(self) -> dict[str, Program]:
        """Programs by command or image: `scheduler.programs["crash"] = Program(boot=Boot.CRASH)`."""
        return self.engine.programs

    @property
    def journal(self) -> list[tuple]:
        """What was asked, in order: ("create" | "update" | "scale", service, replicas), ("remove", service),
        ("oneoff", "<app> v<release>", command)."""
        return self.engine.journal

    # -- writes -----------------------------------------------------------------------------------------------

    def ensure_process(self, spec: ProcessSpec) -> str:
        name = spec.service_name
        if spec.replicas < 0:
            raise SchedulerError(f"{name}: replicas must be 0 or more, not {spec.replicas}")
        spec = dataclasses.replace(spec, env=dict(spec.env), constraints=list(spec.constraints))
        with self.engine.lock:
            current = self.engine.services.get(name)
            if current is None:
                now = _now()
                current = _Service(
                    id=self._new_id(),
                    spec=spec,
                    program=self._program(spec.command, spec.image),
                    created_at=now,
                    updated_at=now,
                )
                self.engine.services[name] = current
                self._resize(current, spec.replicas)
                self.engine.journal.append(("create", name, spec.replicas))
            elif _template(current.spec) != _template(spec):
                # a new task template: every task is replaced (Swarm rolls them one by one, start-first)
                for history in current.slots.values():
                    history[-1].stop()
                current.slots.clear()
                current.spec, current.program, current.updated_at = (
                    spec,
                    self._program(spec.command, spec.image),
                    _now(),
                )
                self._resize(current, spec.replicas)
                self.engine.journal.append(("update", name, spec.replicas))
            elif current.spec.replicas != spec.replicas:
                current.spec, current.updated_at = spec, _now()
                self._resize(current, spec.replicas)
                self.engine.journal.append(("scale", name, spec.replicas))
            return current.id

    def scale(self, *, app: str, release: int, process: str, replicas: int, generation: int = 0) -> None:
        name = service_name(app=app, release=release, process=process, generation=generation)
        if replicas < 0:
            raise SchedulerError(f"{name}: replicas must be 0 or more, not {replicas}")
        with self.engine.lock:
            current = self.engine.services.get(name)
            if current is None:
                raise SchedulerError(f"{name} does not exist")
            if current.spec.replicas == replicas:
                return
            current.spec, current.updated_at = dataclasses.replace(current.spec, replicas=replicas), _now()
            self._resize(current, replicas)
            self.engine.journal.append(("scale", name, replicas))

    def remove(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[str]:
        with self.engine.lock:
            removed = []
            for service in self._find(app=app, release=release, process=process, generation=generation):
                for history in service.slots.values():
                    history[-1].stop()
                del self.engine.services[service.name]
                self.engine.journal.append(("remove", service.name))
                removed.append(service.name)
            return removed

    # -- reads ------------------------------------------------------------------------------------------------

    def services(self, *, app: str) -> list[ServiceInfo]:
        with self.engine.lock:
            return sorted(
                (
                    ServiceInfo(
                        id=service.id,
                        name=service.name,
                        app=service.spec.app,
                        team=service.spec.team,
                        release=service.spec.release,
                        process=service.spec.process,
                        image=service.spec.image,
                        replicas=service.spec.replicas,
                        port=service.spec.container_port,
                        created_at=service.created_at,
                        updated_at=service.updated_at,
                        generation=service.spec.generation,
                    )
                    for service in self._find(app=app)
                ),
                key=lambda s: (s.release, s.process, s.generation),
            )

    def tasks(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[TaskInfo]:
        with self.engine.lock:
            return [
                self._info(service, slot)
                for service in self._find(app=app, release=release, process=process, generation=generation)
                for slot in sorted(service.slots)
            ]

    def tasks_of_every_app(self, *, process: str) -> list[TaskInfo]:
        with self.engine.lock:
            return [
                self._info(service, slot)
                for service in sorted(self.engine.services.values(), key=lambda s: s.name)
                if service.spec.process == process
                for slot in sorted(service.slots)
            ]

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
        """The running tasks (web: with a port) when there are `replicas` of them. Nothing changes in memory while
        one waits, so otherwise it raises at once, with Swarm's account of each slot and the last failure."""
        name = service_name(app=app, release=release, process=process, generation=generation)
        with self.engine.lock:
            service = self.engine.services.get(name)
            if service is None:
                raise SchedulerError(f"{name} does not exist")
            current = [self._info(service, slot) for slot in sorted(service.slots)]
            needs_port = service.spec.container_port is not None
            up = [t for t in current if t.running and (t.published_port or not needs_port)]
            if len(up) >= replicas:
                for task in service.newest():
                    if task.exits:
                        self._exit(service, task)
                return up
            failed = [t for history in service.slots.values() for t in history if t.state == "failed"]
            parts = [f"{name}: {len(up)}/{replicas} replicas running after 0s"]
            if failed:
                parts.append(f"{len(failed)} tasks failed")
            parts += [
                f"slot {t.slot}: {t.state}" + (f" ({t.last_error})" if t.last_error else "") for t in current
            ]
            if failed:
                detail = f"last failure: {failed[-1].error}, exit code {self._exit_code(service)}"
                if service.program.lines:
                    detail += f", output: {' | '.join(service.program.lines[-5:])}"
                parts.append(detail)
            raise SchedulerError("; ".join(parts))

    def task_logs(self, task_id: str, tail: int = 100) -> list[str]:
        with self.engine.lock:
            for service in self.engine.services.values():
                if any(t.id == task_id for history in service.slots.values() for t in history):
                    return list(service.program.lines[-tail:]) if tail else []
        return []  # as Swarm: a task whose service is gone has no logs left

    def spec_matches(self, spec: ProcessSpec) -> bool | None:
        with self.engine.lock:
            current = self.engine.services.get(spec.service_name)
            return None if current is None else _template(current.spec) == _template(spec)

    def image_has_command(self, image: str) -> bool | None:
        return self.engine.programs.get(image, Program()).has_command

    # -- one-off runs -------------------------------------------------------------------------------------------

    def run_oneoff(
        self,
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
        """berth.runtime.oneoff.run_oneoff in memory: the program's lines, then its exit code. One-off runs are
        not part of the Scheduler seam (the roll-out calls run_oneoff itself): a test puts this in its place."""
        service_name(app=app, release=release, process="run")  # the names the real run would refuse
        program = self._program(command, image)
        with self.engine.lock:
            self.engine.journal.append(("oneoff", f"{app} v{int(release)}", command))
        if detach:
            return OneOffResult(exit_code=None, container_id=secrets.token_hex(32))
        for line in program.lines:
            (on_line or (lambda line: None))(line)
        return OneOffResult(exit_code=program.exit_code, container_id=secrets.token_hex(32))

    # -- helpers ----------------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self.engine.ids):025x}"  # Swarm's ids are 25 characters too

    def _program(self, command: str | None, image: str) -> Program:
        programs = self.engine.programs
        return (programs.get(command) if command else None) or programs.get(image) or Program()

    def _find(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[_Service]:
        return sorted(
            (
                s
                for s in self.engine.services.values()
                if s.spec.app == app
                and release in (None, s.spec.release)
                and process in (None, s.spec.process)
                and generation in (None, s.spec.generation)
            ),
            key=lambda s: s.name,
        )

    def _resize(self, service: _Service, replicas: int) -> None:
        """Start the slots up to `replicas` and stop those above it (Swarm picks which; here the highest)."""
        for slot in sorted(service.slots):
            if slot > replicas:
                service.slots.pop(slot)[-1].stop()
        for slot in range(1, replicas + 1):
            if slot not in service.slots:
                service.slots[slot] = self._start(service, slot)

    def _start(self, service: _Service, slot: int) -> list[_Task]:
        """A new slot's tasks, oldest first, as they stand right after its start."""
        boot = service.program.boot
        if boot == Boot.CRASH:
            error = f"task: non-zero exit ({self._exit_code(service)})"
            failed = [
                _Task(id=self._new_id(), slot=slot, state="failed", desired_state="shutdown", error=error)
                for _ in range(CRASH_FAILURES)
            ]
            return [*failed, _Task(id=self._new_id(), slot=slot, state="starting")]
        listener = None
        if service.spec.container_port is not None:
            answer = f"{service.name} slot {slot}".encode() if boot == Boot.SERVE else None
            listener = _Listener(answer=answer)
        task = _Task(
            id=self._new_id(),
            slot=slot,
            state="running",
            started_at=_now(),
            listener=listener,
            exits=boot == Boot.EXIT,
        )
        return [task]

    def _exit(self, service: _Service, task: _Task) -> None:
        """The task ends on its own; Swarm's restart policy puts a new one, still starting, in its slot."""
        task.stop(state="failed", error=f"task: non-zero exit ({self._exit_code(service)})")
        service.slots[task.slot].append(_Task(id=self._new_id(), slot=task.slot, state="starting"))

    @staticmethod
    def _exit_code(service: _Service) -> int:
        return service.program.exit_code or 1

    def _info(self, service: _Service, slot: int) -> TaskInfo:
        history = service.slots[slot]
        task = history[-1]
        last_error = task.error or next((t.error for t in reversed(history[:-1]) if t.error), "")
        return TaskInfo(
            id=task.id,
            service=service.name,
            app=service.spec.app,
            release=service.spec.release,
            process=service.spec.process,
            slot=slot,
            node_id=NODE_ID,
            node_address=LOOPBACK,
            state=task.state,
            desired_state=task.desired_state,
            published_port=task.port,
            container_id=task.id if task.state == "running" else None,
            started_at=task.started_at if task.state == "running" else None,
            error=task.error,
            last_error=last_error,
            restarts=len(history) - 1,
            generation=service.spec.generation,
        )

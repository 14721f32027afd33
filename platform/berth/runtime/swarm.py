"""The Swarm scheduler: each process type of each release is one Swarm service. The only module that talks to Swarm.

Choices measured on this platform (Docker 20.10, a kernel without IPVS):
- No VIP and no ingress routing mesh: both need IPVS. Services use `dnsrr` endpoints and publish their port in
  host mode with no PublishedPort, so Docker picks a free port per task (a fixed published port would allow one
  task per node). Berth's router reaches each task at <node address>:<published port>.
- Apps of one team share an attachable overlay network `berth-team-<team>`; the web process carries the network
  alias `<app>`, so `http://<app>:<port>` reaches it from the team's other apps and one-off runs (DNS round robin).
- With Berth's registry (BERTH_REGISTRY) a release's image is already a digest reference `<registry>/<app>@sha256:…`
  (the build pushed it): every node pulls exactly those bytes. The client logs in to the registry before it
  creates or updates a service, so the SDK sends the credentials (X-Registry-Auth) and Swarm hands them to the
  worker nodes for the pull (a later update without them keeps them). Without a registry the image stays local:
  one node only.
- A task's address for the router is its node's Status.Addr, this manager's too (the address `docker swarm init
  --advertise-addr` was given: the machine's own for a swarm `make up` made); host-mode ports bind every
  interface, so the router reaches them there from any network namespace. 127.0.0.1 only when a node reports none.
- Docker's proxy accepts connections on a published port even when nothing in the container listens; a running
  task with a port is therefore not yet a ready one (see berth.runtime.health.http_ready).
- Tenants are hostile: every task drops all capabilities but APP_CAPABILITIES (CapabilityDrop/CapabilityAdd, API
  1.41), has a pids limit (Resources.Limits.Pids, API 1.41) and a memory limit (the process type's, else
  BERTH_PROCESS_MEMORY_MB). `no-new-privileges` has no per-service field before API 1.44: the engine sets it for
  every container (daemon.json, written by `make up`).
"""

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import docker.errors
from django.conf import settings
from docker import types

from berth.runtime.client import docker_client
from berth.runtime.registry import RegistryError, registry_login
from berth.runtime.scheduler import (
    APP_CAPABILITIES,
    LABEL_APP,
    LABEL_GENERATION,
    LABEL_INSTALLATION,
    LABEL_PROCESS,
    LABEL_RELEASE,
    LABEL_SPEC,
    LABEL_TEAM,
    ProcessSpec,
    Scheduler,
    SchedulerError,
    ServiceInfo,
    TaskInfo,
    command_args,
    installation_labels,
    is_ours,
    process_memory_mb,
    process_pids_limit,
    register_scheduler,
    service_name,
    team_network_name,
)

logger = logging.getLogger(__name__)

NANOSECONDS = 1_000_000_000
RESTART_DELAY_S = 2
STOP_GRACE_S = 30  # SIGTERM, then SIGKILL after this long, as on Heroku
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
FAILED_STATES = frozenset({"failed", "rejected"})
TERMINAL_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
LOOPBACK = "127.0.0.1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INIT_PROGRAMS = frozenset({"tini", "dumb-init", "docker-init"})


def parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python 3.11 reads at most microseconds."""
    if not value or value.startswith("0001-"):
        return None
    main, _, rest = value.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        value = f"{main}.{digits[:6]}{zone}"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def team_network_ensure(
    *, team: str, labels: dict[str, str] | None = None, client: docker.DockerClient | None = None
) -> str:
    """The team's attachable overlay network (created if missing). Returns its id."""
    client = client or docker_client()
    name = team_network_name(team)

    def existing() -> str | None:
        # the `name` filter matches substrings, so compare exactly
        found = [n for n in client.api.networks(names=[name]) if n["Name"] == name]
        if found and not is_ours(found[0].get("Labels")):
            # joining it would put this team's apps on one network with another installation's
            raise SchedulerError(
                f"network {name} belongs to another Berth installation on this engine "
                f"({found[0]['Labels'][LABEL_INSTALLATION]}); `manage.py doctor` says how to remove its leftovers"
            )
        return found[0]["Id"] if found else None

    network_id = existing()
    if network_id:
        return network_id
    try:
        created = client.api.create_network(
            name,
            driver="overlay",
            attachable=True,
            check_duplicate=True,
            labels={LABEL_TEAM: team, **installation_labels(), **(labels or {})},
        )
        return created["Id"]
    except docker.errors.APIError as exc:
        # another worker created it between our look and our create: the manager keeps names unique
        network_id = existing()
        if network_id:
            return network_id
        raise SchedulerError(f"could not create network {name}: {exc.explanation or exc}") from exc


def team_network_remove(*, team: str, client: docker.DockerClient | None = None) -> bool:
    client = client or docker_client()
    name = team_network_name(team)
    removed = False
    for network in client.api.networks(names=[name]):
        if network["Name"] == name and is_ours(network.get("Labels")):
            try:
                client.api.remove_network(network["Id"])
                removed = True
            except docker.errors.NotFound:
                pass
    return removed


def _label_filters(*, app: str, release: int | None = None, process: str | None = None) -> list[str]:
    filters = [f"{LABEL_APP}={app}"]
    if release is not None:
        filters.append(f"{LABEL_RELEASE}={int(release)}")
    if process is not None:
        filters.append(f"{LABEL_PROCESS}={process}")
    return filters


def _published_port(task: dict, target_port: int | None) -> int | None:
    for port in (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or []:
        if port.get("PublishMode") == "host" and (
            target_port is None or port.get("TargetPort") == target_port
        ):
            return port.get("PublishedPort") or None
    return None


def _target_port(service: dict) -> int | None:
    ports = service["Spec"].get("EndpointSpec", {}).get("Ports") or []
    return ports[0]["TargetPort"] if ports else None


def _slot_key(task: dict) -> tuple[str, str]:
    # replicated services number their slots; global ones have one "slot" per node
    return task["ServiceID"], str(task.get("Slot") or task.get("NodeID") or task["ID"])


def _generation(labels: dict) -> int:
    try:
        return int(labels.get(LABEL_GENERATION, 0))
    except ValueError:
        return 0


def _task_spec_hash(task: dict) -> str | None:
    return (task.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {}).get(LABEL_SPEC)


@register_scheduler("swarm")
class SwarmScheduler(Scheduler):
    """Runs releases as Swarm services on the swarm whose manager DOCKER_HOST points at.

    `extra_labels` go on every service, container and network this instance creates (tests use org.berth.test=1
    so a finalizer, or the next run, can find what they made).
    """

    def __init__(
        self, *, client: docker.DockerClient | None = None, extra_labels: dict[str, str] | None = None
    ) -> None:
        self.client = client or docker_client()
        self.api = self.client.api
        self.extra_labels = dict(extra_labels or {})

    # -- writes -----------------------------------------------------------------------------------------------

    def ensure_process(self, spec: ProcessSpec) -> str:
        name = spec.service_name
        if spec.replicas < 0:
            raise SchedulerError(f"{name}: replicas must be 0 or more, not {spec.replicas}")
        network_id = team_network_ensure(team=spec.team, labels=self.extra_labels, client=self.client)
        definition = self._definition(spec, network_id)
        self._registry_auth(spec.image)
        mode = types.ServiceMode("replicated", replicas=spec.replicas)
        update_config = types.UpdateConfig(parallelism=1, order="start-first", failure_action="pause")
        for _attempt in range(5):
            current = self._inspect(name)
            try:
                if current is None:
                    created = self.api.create_service(
                        definition["task_template"],
                        name=name,
                        labels=definition["labels"],
                        mode=mode,
                        update_config=update_config,
                        endpoint_spec=definition["endpoint_spec"],
                    )
                    return created["ID"]
                unchanged = current["Spec"].get("Labels", {}).get(LABEL_SPEC) == definition["hash"]
                if unchanged and self._replicas(current) == spec.replicas:
                    return current["ID"]
                # Same task template and only the replica count changed: Swarm keeps the running tasks.
                self.api.update_service(
                    current["ID"],
                    version=current["Version"]["Index"],
                    task_template=definition["task_template"],
                    name=name,
                    labels=definition["labels"],
                    mode=mode,
                    update_config=update_config,
                    endpoint_spec=definition["endpoint_spec"],
                )
                return current["ID"]
            except docker.errors.APIError as exc:
                if self._is_race(exc):
                    continue  # created or updated by someone else meanwhile: look again
                raise SchedulerError(f"{name}: {exc.explanation or exc}") from exc
        raise SchedulerError(f"{name}: kept conflicting with concurrent changes; try again")

    def scale(self, *, app: str, release: int, process: str, replicas: int, generation: int = 0) -> None:
        name = service_name(app=app, release=release, process=process, generation=generation)
        if replicas < 0:
            raise SchedulerError(f"{name}: replicas must be 0 or more, not {replicas}")
        for _attempt in range(5):
            current = self._inspect(name)
            if current is None:
                raise SchedulerError(f"{name} does not exist")
            if self._replicas(current) == replicas:
                return
            # Send the stored spec back with only the replica count changed. The SDK's fetch_current_spec
            # round trip adds empty fields (Resources, DNSConfig) that Swarm reads as a new task spec, and
            # then it replaces every running task.
            spec = {**current["Spec"], "Mode": {"Replicated": {"Replicas": replicas}}}
            try:
                response = self.api._post_json(
                    self.api._url("/services/{0}/update", current["ID"]),
                    data=spec,
                    params={"version": current["Version"]["Index"]},
                )
                self.api._raise_for_status(response)
                return
            except docker.errors.APIError as exc:
                if self._is_race(exc):
                    continue
                raise SchedulerError(f"{name}: {exc.explanation or exc}") from exc
        raise SchedulerError(f"{name}: kept conflicting with concurrent changes; try again")

    def remove(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
        timeout: float = 45,
    ) -> list[str]:
        """Remove the services; then wait, at most `timeout` seconds, until their containers on this node are gone
        (containers on other nodes are stopped by their own agents; the manager cannot list them)."""
        removed, removed_ids = [], []
        for service in self._find_services(app=app, release=release, process=process, generation=generation):
            try:
                self.api.remove_service(service["ID"])
                removed.append(service["Spec"]["Name"])
                removed_ids.append(service["ID"])
            except docker.errors.NotFound:
                pass
        if generation is None:
            filter_sets = [
                [*_label_filters(app=app, release=release, process=process), "com.docker.swarm.task.id"]
            ]
        else:
            # generation 0 carries no label: wait on the removed services' own containers instead
            filter_sets = [[f"com.docker.swarm.service.id={service_id}"] for service_id in removed_ids]

        def remaining() -> bool:
            return any(
                is_ours(container.get("Labels"))
                for f in filter_sets
                for container in self.api.containers(all=True, filters={"label": f})
            )

        deadline = time.monotonic() + timeout
        while remaining():
            if time.monotonic() > deadline:
                raise SchedulerError(
                    f"removed {', '.join(removed) or 'no services'} of {app} but their containers were still "
                    f"there after {timeout:.0f}s"
                )
            time.sleep(0.2)
        return removed

    # -- reads ------------------------------------------------------------------------------------------------

    def services(self, *, app: str) -> list[ServiceInfo]:
        infos = []
        for service in self._find_services(app=app):
            labels = service["Spec"].get("Labels", {})
            infos.append(
                ServiceInfo(
                    id=service["ID"],
                    name=service["Spec"]["Name"],
                    app=labels.get(LABEL_APP, ""),
                    team=labels.get(LABEL_TEAM, ""),
                    release=int(labels.get(LABEL_RELEASE, 0)),
                    process=labels.get(LABEL_PROCESS, ""),
                    image=service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
                    replicas=self._replicas(service),
                    port=_target_port(service),
                    created_at=parse_time(service.get("CreatedAt")),
                    updated_at=parse_time(service.get("UpdatedAt")),
                    generation=_generation(labels),
                )
            )
        return sorted(infos, key=lambda s: (s.release, s.process, s.generation))

    def tasks(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[TaskInfo]:
        services = self._find_services(app=app, release=release, process=process, generation=generation)
        return self._tasks_of(services)

    def tasks_of_every_app(self, *, process: str) -> list[TaskInfo]:
        filters = {"label": [LABEL_APP, f"{LABEL_PROCESS}={process}"]}
        services = [s for s in self.api.services(filters=filters) if is_ours(s["Spec"].get("Labels"))]
        # every task meant to run, not a filter naming each service: the engine refuses the whole call when one of
        # them was removed in between (a release retired); _tasks_of keeps those of `services`. Only those meant
        # to run: the history Swarm keeps of each slot (up to 5 ended tasks) is most of the list, and of no use
        # here (a task still running while it is shut down is left out: its app looks out of step, and is
        # reconciled one by one, from all of its tasks)
        raw = self.api.tasks(filters={"desired-state": "running"}) if services else []
        return self._tasks_of(services, raw=raw)

    def wait_running(
        self,
        *,
        app: str,
        release: int,
        process: str,
        replicas: int,
        timeout: float,
        max_failures: int = 3,
        settle: float = 1.0,
        generation: int = 0,
        answers: Callable[[TaskInfo], bool] | None = None,
    ) -> list[TaskInfo]:
        """Wait until `replicas` tasks of the current spec run (web: each with a published port).

        A task counts once it has been seen running for `settle` seconds: a process that exits at once is
        reported "running" by Swarm for a moment. Or as soon as `answers` says it is up (a web process answering
        HTTP: no need to wait out the second, which a quick app's deploy spent waiting). Raises SchedulerError at
        `timeout`, or as soon as `max_failures` tasks of the current spec have failed
        (a crash loop does not get better by waiting), with each slot's state, its last error and the last lines
        the latest failed task printed.
        """
        name = service_name(app=app, release=release, process=process, generation=generation)
        started = time.monotonic()
        deadline = started + timeout
        seen_running: dict[str, float] = {}
        while True:
            service = self._inspect(name)
            if service is None:
                raise SchedulerError(f"{name} does not exist")
            spec_hash = service["Spec"].get("Labels", {}).get(LABEL_SPEC)
            raw = [
                t
                for t in self.api.tasks(filters={"service": [service["ID"]]})
                if _task_spec_hash(t) == spec_hash
            ]
            current = self._tasks_of([service], raw=raw, keep_finished=True)
            needs_port = _target_port(service) is not None
            now = time.monotonic()
            up = [t for t in current if t.running and (t.published_port or not needs_port)]
            seen_running = {t.id: seen_running.get(t.id, now) for t in up}
            ready = [t for t in up if now - seen_running[t.id] >= settle or (answers and answers(t))]
            if len(ready) >= replicas:
                return ready
            failed = [t for t in raw if t["Status"]["State"] in FAILED_STATES]
            elapsed = time.monotonic() - started
            if len(failed) >= max_failures:
                raise SchedulerError(self._not_running_message(name, current, replicas, elapsed, failed))
            if time.monotonic() >= deadline:
                raise SchedulerError(self._not_running_message(name, current, replicas, elapsed, failed))
            time.sleep(0.1 if up and answers else 0.25)  # a task up: its answer is what the deploy waits for

    def task_logs(self, task_id: str, tail: int = 100) -> list[str]:
        """The last `tail` lines the task's container printed (stdout and stderr interleaved)."""
        try:
            response = self.api._get(
                self.api._url("/tasks/{0}/logs", task_id),
                params={
                    "stdout": True,
                    "stderr": True,
                    "follow": False,
                    "tail": str(tail),
                    "timestamps": False,
                },
                stream=True,
            )
            chunks = self.api._get_result_tty(True, response, False)
            text = b"".join(chunks).decode(errors="replace")
        except docker.errors.NotFound:
            return []
        except docker.errors.APIError as exc:
            raise SchedulerError(f"logs of task {task_id}: {exc.explanation or exc}") from exc
        return text.splitlines()

    # -- helpers ----------------------------------------------------------------------------------------------

    def _definition(self, spec: ProcessSpec, network_id: str) -> dict:
        labels = {
            LABEL_APP: spec.app,
            LABEL_TEAM: spec.team,
            LABEL_RELEASE: str(int(spec.release)),
            LABEL_PROCESS: spec.process,
            **self.extra_labels,
        }
        if spec.generation:
            # only on later generations, so a release's first service keeps the spec hash it always had
            labels[LABEL_GENERATION] = str(int(spec.generation))
        env = dict(spec.env)
        port = spec.container_port
        if port is not None:
            env["PORT"] = str(port)
        resources = types.Resources(
            mem_limit=process_memory_mb(spec.memory_mb) * 1024 * 1024,
            cpu_limit=int(spec.cpu * NANOSECONDS) if spec.cpu else None,
        )
        resources["Limits"]["Pids"] = process_pids_limit()  # the SDK has no argument for it; the API has
        network = {"Target": network_id}
        if spec.is_web:
            network["Aliases"] = [spec.app]
        endpoint_spec = {"Mode": "dnsrr"}
        if port is not None:
            # no PublishedPort: Docker picks one per task, so several replicas fit on one node
            endpoint_spec["Ports"] = [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host"}]

        def task_template(container_labels: dict[str, str]) -> types.TaskTemplate:
            return types.TaskTemplate(
                container_spec=types.ContainerSpec(
                    image=spec.image,
                    # args, not command: the image's ENTRYPOINT (tini in the stack) stays PID 1
                    args=command_args(spec.command) if spec.command else None,
                    env=[f"{k}={v}" for k, v in sorted(env.items())],
                    labels=container_labels,
                    stop_signal="SIGTERM",
                    stop_grace_period=STOP_GRACE_S * NANOSECONDS,
                    cap_drop=["ALL"],
                    cap_add=list(APP_CAPABILITIES),
                ),
                resources=resources,
                restart_policy=types.RestartPolicy(
                    condition="on-failure", delay=RESTART_DELAY_S * NANOSECONDS
                ),
                placement=types.Placement(
                    constraints=list(spec.constraints),
                    preferences=[types.PlacementPreference("spread", "node.id")],
                ),
                log_driver={"Name": "json-file", "Options": dict(LOG_OPTIONS)},
                networks=[network],
            )

        digest = hashlib.sha256(
            json.dumps(
                {"task": task_template(labels), "endpoint": endpoint_spec, "labels": labels}, sort_keys=True
            ).encode()
        ).hexdigest()[:16]
        # the installation's label stays out of the hash: a service made before installations had ids keeps its
        # hash, so an upgrade does not roll every running app again
        stamped = {**labels, **installation_labels(), LABEL_SPEC: digest}
        return {
            "hash": digest,
            "labels": stamped,
            "task_template": task_template(stamped),
            "endpoint_spec": endpoint_spec,
        }

    def _registry_auth(self, image: str) -> None:
        """Log in to Berth's registry when the image lives there: services then carry the credentials.

        A registry that is down does not stop the service: nodes that hold the image (this one always does: the
        build pushed it from here) still start its tasks; a node that must pull reports it, and the deploy's wait
        for running tasks says so."""

        if settings.BERTH_REGISTRY and image.startswith(f"{settings.BERTH_REGISTRY}/"):
            try:
                registry_login(self.client)
            except RegistryError as exc:
                logger.warning("services of %s go without registry credentials: %s", image, exc)

    def _inspect(self, name: str) -> dict | None:
        """The service named `name`, None when there is none. Swarm's names are one per engine: one of another
        installation is refused, never updated, scaled or waited on as ours."""
        try:
            service = self.api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        owner = service["Spec"].get("Labels", {}).get(LABEL_INSTALLATION)
        if not is_ours(service["Spec"].get("Labels")):
            raise SchedulerError(
                f"{name} belongs to another Berth installation on this engine ({owner}); "
                "`manage.py doctor` lists its leftovers and how to remove them"
            )
        return service

    def _find_services(
        self,
        *,
        app: str,
        release: int | None = None,
        process: str | None = None,
        generation: int | None = None,
    ) -> list[dict]:
        filters = {"label": _label_filters(app=app, release=release, process=process)}
        # Docker's label filter cannot say "ours or unlabelled" (see is_ours): filtered here
        services = [s for s in self.api.services(filters=filters) if is_ours(s["Spec"].get("Labels"))]
        if generation is not None:
            services = [s for s in services if _generation(s["Spec"].get("Labels", {})) == generation]
        return services

    def spec_matches(self, spec: ProcessSpec) -> bool | None:
        current = self._inspect(spec.service_name)
        if current is None:
            return None
        network_id = team_network_ensure(team=spec.team, labels=self.extra_labels, client=self.client)
        return current["Spec"].get("Labels", {}).get(LABEL_SPEC) == self._definition(spec, network_id)["hash"]

    def image_has_command(self, image: str) -> bool | None:
        try:
            config = self.api.inspect_image(image).get("Config") or {}
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise SchedulerError(f"cannot inspect {image}: {exc.explanation or exc}") from exc
        if config.get("Cmd"):
            return True
        entrypoint = config.get("Entrypoint") or []
        # an init (the stack's tini) as the whole entrypoint runs nothing without a command
        return bool(entrypoint) and entrypoint[0].rsplit("/", 1)[-1] not in INIT_PROGRAMS

    @staticmethod
    def _replicas(service: dict) -> int:
        return service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 0)

    @staticmethod
    def _is_race(exc: docker.errors.APIError) -> bool:
        text = str(exc.explanation or exc).lower()
        return exc.status_code == 409 or "out of sequence" in text or "already exists" in text

    def _node_addresses(self) -> dict[str, str | None]:
        # Host-mode ports bind every interface of the node: every node, this manager included, is reached at the
        # address it registered with (Status.Addr); loopback only when the manager reports none.
        addresses, unaddressed = {}, []
        for node in self.api.nodes():
            address = node.get("Status", {}).get("Addr")
            if address in (None, "", "0.0.0.0"):
                # a manager may report no usable Status.Addr; its manager address has the host
                manager = (node.get("ManagerStatus") or {}).get("Addr", "")
                address = manager.rpartition(":")[0] or None
            # the node's own address even for this manager: a router outside the manager's network namespace
            # (or on another machine) must reach its tasks too; host-mode ports listen on every interface
            addresses[node["ID"]] = address
            if address is None:
                unaddressed.append(node["ID"])
        if unaddressed:
            # Which node is this one, asked only when one has no address: the engine's /info runs `runc
            # --version` and `docker-init --version` each time, and every poll of a deploy's tasks asked it
            # (~10 a second in make test, the largest part of the engine's CPU there)
            local = self.api.info().get("Swarm", {}).get("NodeID")
            if local in unaddressed:
                addresses[local] = LOOPBACK
        return addresses

    def _tasks_of(
        self, services: list[dict], raw: list[dict] | None = None, keep_finished: bool = False
    ) -> list[TaskInfo]:
        if not services:
            return []
        if raw is None:
            raw = self.api.tasks(filters={"service": [s["ID"] for s in services]})
        by_id = {s["ID"]: s for s in services}
        addresses = self._node_addresses()
        slots: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for task in raw:
            if task["ServiceID"] in by_id:
                slots[_slot_key(task)].append(task)
        infos = []
        for history in slots.values():
            history.sort(key=lambda t: parse_time(t.get("CreatedAt")) or EPOCH)
            task = history[-1]
            status = task.get("Status", {})
            finished = task.get("DesiredState") != "running" and status.get("State") in TERMINAL_STATES
            if finished and not keep_finished:
                continue  # a slot being scaled away or a removed service: no longer part of what runs
            service = by_id[task["ServiceID"]]
            labels = service["Spec"].get("Labels", {})
            error = status.get("Err", "") or ""
            last_error = error or next(
                (t["Status"].get("Err") for t in reversed(history[:-1]) if t["Status"].get("Err")), ""
            )
            state = status.get("State", "")
            infos.append(
                TaskInfo(
                    id=task["ID"],
                    service=service["Spec"]["Name"],
                    app=labels.get(LABEL_APP, ""),
                    release=int(labels.get(LABEL_RELEASE, 0)),
                    process=labels.get(LABEL_PROCESS, ""),
                    slot=task.get("Slot"),
                    node_id=task.get("NodeID", ""),
                    node_address=addresses.get(task.get("NodeID", "")),
                    state=state,
                    desired_state=task.get("DesiredState", ""),
                    published_port=_published_port(task, _target_port(service)),
                    container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or None,
                    started_at=parse_time(status.get("Timestamp")) if state == "running" else None,
                    error=error,
                    last_error=last_error or "",
                    restarts=len(history) - 1,
                    generation=_generation(labels),
                )
            )
        return sorted(infos, key=lambda t: (t.service, t.slot or 0, t.node_id))

    def _not_running_message(
        self, name: str, current: list[TaskInfo], replicas: int, elapsed: float, failed: list[dict]
    ) -> str:
        running = sum(1 for t in current if t.running)
        parts = [f"{name}: {running}/{replicas} replicas running after {elapsed:.0f}s"]
        if failed:
            parts.append(f"{len(failed)} tasks failed")
        for task in current:
            detail = f"slot {task.slot}: {task.state}"
            if task.last_error:
                detail += f" ({task.last_error})"
            parts.append(detail)
        if failed:
            latest = max(failed, key=lambda t: parse_time(t["Status"].get("Timestamp")) or EPOCH)
            detail = f"last failure: {latest['Status'].get('Err') or latest['Status']['State']}"
            container = latest["Status"].get("ContainerStatus") or {}
            if container.get("ContainerID"):  # a rejected task (say, a missing image) never had a container
                detail += f", exit code {container.get('ExitCode')}"
                lines = [line.strip() for line in self.task_logs(latest["ID"], tail=5) if line.strip()]
                if lines:
                    detail += f", output: {' | '.join(lines)}"
            parts.append(detail)
        return "; ".join(parts)

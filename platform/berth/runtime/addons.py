"""Add-on servers (PostgreSQL, Redis) on Swarm: one service each, one replica, its data in a named volume.

- The service is pinned to the node it was first placed on (the manager that builds the add-on images: they are
  local images, no registry), and its volume lives there; updates are stop-first, so two servers never share one
  data directory.
- It joins only its team's overlay network (berth.runtime.swarm.team_network_ensure), with the endpoint mode the
  apps use (dnsrr: no IPVS here); its service name is its host name there. Another team's network has no route
  to it, and it publishes no port.
- The password comes in the service's environment and the start command sets it on every start (PostgreSQL: a
  single-user `ALTER ROLE` before the server starts; Redis: `requirepass`): rotating it is a service update.
- The image holds only Debian's packages (berth.addons.images builds it); the start command is here.
"""

import shlex
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker import types

from berth.runtime.client import docker_client
from berth.runtime.pull import image_inspect
from berth.runtime.scheduler import (
    APP_CAPABILITIES,
    LABEL_TEAM,
    SchedulerError,
    installation_labels,
    is_ours,
    team_network_name,
)
from berth.runtime.swarm import LOG_OPTIONS, NANOSECONDS, team_network_ensure

LABEL_ADDON = "org.berth.addon"  # <team>/<name>
LABEL_ADDON_KIND = "org.berth.addon.kind"
LABEL_ADDON_VERSION = "org.berth.addon.version"  # on the image: the Debian package's version
RECIPE_LABEL = "org.berth.addon.recipe"  # on the image: hash of what it was built from
LABEL_SWARM_SERVICE = "com.docker.swarm.service.name"
ADDON_USER = "berth"
ADDON_DATABASE = "berth"
STOP_GRACE_S = 60  # PostgreSQL's fast shutdown and Redis' final save get time to finish
READY_TIMEOUT_S = 120
CONTAINERS_GONE_TIMEOUT_S = STOP_GRACE_S + 30


@dataclass(frozen=True)
class AddonKind:
    """What differs between kinds: port, where the data lives, the URL and the start command."""

    name: str
    port: int
    data_dir: str
    start: str  # sh script; BERTH_ADDON_PASSWORD is in its environment

    def url(self, *, host: str, password: str) -> str:
        if self.name == "postgres":
            return f"postgres://{ADDON_USER}:{password}@{host}:{self.port}/{ADDON_DATABASE}"
        # the user `default` named: redis-cli 7 sends an empty user name to AUTH otherwise (WRONGPASS)
        return f"redis://default:{password}@{host}:{self.port}/0"


# Runs as root first (chown of the volume), then the server as the package's own user (setpriv, util-linux).
# initdb once, when the volume is empty; the password from the environment before every start, so a rotation
# is one service update and the old password is refused from then on.
POSTGRES_START = r"""set -e
D=/var/lib/postgresql/data/pgdata
mkdir -p "$D" /run/postgresql
chown postgres:postgres /var/lib/postgresql/data "$D" /run/postgresql
chmod 700 "$D"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$D/PG_VERSION" ]; then
  pw=$(mktemp); printf '%s' "$BERTH_ADDON_PASSWORD" > "$pw"; chown postgres "$pw"
  as_postgres initdb -D "$D" -U berth --pwfile="$pw" --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  echo "listen_addresses = '*'" >> "$D/postgresql.conf"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$D/pg_hba.conf"
  echo "CREATE DATABASE berth;" | as_postgres postgres --single -D "$D" postgres >/dev/null
fi
printf "ALTER ROLE berth PASSWORD '%s';\n" "$BERTH_ADDON_PASSWORD" | as_postgres postgres --single -D "$D" postgres >/dev/null
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$D"
"""

REDIS_START = r"""set -e
mkdir -p /data
chown redis:redis /data
printf 'bind 0.0.0.0\nport 6379\nprotected-mode no\ndir /data\nappendonly yes\nrequirepass %s\n' "$BERTH_ADDON_PASSWORD" > /tmp/redis.conf
chown redis /tmp/redis.conf; chmod 600 /tmp/redis.conf
exec setpriv --reuid=redis --regid=redis --init-groups redis-server /tmp/redis.conf
"""

KINDS = {
    "postgres": AddonKind("postgres", 5432, "/var/lib/postgresql/data", POSTGRES_START),
    "redis": AddonKind("redis", 6379, "/data", REDIS_START),
}


class AddonRuntimeError(SchedulerError):
    pass


def addon_image_ref(kind: str) -> str:
    return f"berth/addon-{kind}:bookworm"


def addon_image_version(kind: str) -> str | None:
    """The server's Debian package version the local image carries, None when the image is missing."""
    image = image_inspect(addon_image_ref(kind))
    if image is None:
        return None
    return ((image.get("Config") or {}).get("Labels") or {}).get(LABEL_ADDON_VERSION)


@dataclass(frozen=True)
class AddonSpec:
    """One add-on server: its team, its name (unique in the team), its kind, password and memory."""

    team: str
    name: str
    kind: str
    password: str
    memory_mb: int

    @property
    def service_name(self) -> str:
        # also its host name on the team's network; app services are <app>-v<N>-<process>, never this shape
        team_network_name(self.team)  # validates the team name
        name = f"addon-{self.team}-{self.name}"
        if len(name) > 63:
            raise AddonRuntimeError(f"add-on service name {name!r} is longer than 63 characters")
        return name

    @property
    def volume_name(self) -> str:
        return f"berth-{self.service_name}-data"

    @property
    def url(self) -> str:
        return KINDS[self.kind].url(host=self.service_name, password=self.password)

    def labels(self) -> dict[str, str]:
        return {
            LABEL_ADDON: f"{self.team}/{self.name}",
            LABEL_ADDON_KIND: self.kind,
            LABEL_TEAM: self.team,
            **installation_labels(),
        }


def _local_node_id(client: docker.DockerClient) -> str:
    node_id = (client.info().get("Swarm") or {}).get("NodeID")
    if not node_id:
        raise AddonRuntimeError("this engine is not a Swarm node; add-ons need Swarm")
    return node_id


def _task_template(spec: AddonSpec, *, network_id: str, node_id: str) -> types.TaskTemplate:
    kind = KINDS[spec.kind]
    resources = types.Resources(mem_limit=spec.memory_mb * 1024 * 1024)
    return types.TaskTemplate(
        container_spec=types.ContainerSpec(
            image=addon_image_ref(spec.kind),
            args=["sh", "-c", kind.start],
            env=[f"BERTH_ADDON_PASSWORD={spec.password}"],
            labels=spec.labels(),
            mounts=[types.Mount(target=kind.data_dir, source=spec.volume_name, type="volume")],
            stop_signal="SIGTERM" if spec.kind == "redis" else "SIGINT",  # SIGINT: PostgreSQL's fast shutdown
            stop_grace_period=STOP_GRACE_S * NANOSECONDS,
            cap_drop=["ALL"],
            cap_add=list(APP_CAPABILITIES),
        ),
        resources=resources,
        restart_policy=types.RestartPolicy(condition="any", delay=2 * NANOSECONDS),
        placement=types.Placement(constraints=[f"node.id=={node_id}"]),
        log_driver={"Name": "json-file", "Options": dict(LOG_OPTIONS)},
        networks=[{"Target": network_id}],
    )


def addon_service_create(spec: AddonSpec) -> str:
    """Make the add-on's volume and service on this node; returns the node id it is pinned to. Idempotent: an
    existing service of the same name is kept (a retried create)."""
    client = docker_client()
    if image_inspect(addon_image_ref(spec.kind)) is None:
        raise AddonRuntimeError(
            f"image {addon_image_ref(spec.kind)} is missing; build it with `manage.py addon_images_build {spec.kind}`"
        )
    existing = _service(client, spec.service_name)
    if existing is not None:
        return existing["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0].split("==", 1)[1]
    network_id = team_network_ensure(team=spec.team, client=client)
    node_id = _local_node_id(client)
    try:
        client.api.create_volume(name=spec.volume_name, driver="local", labels=spec.labels())
        client.api.create_service(
            _task_template(spec, network_id=network_id, node_id=node_id),
            name=spec.service_name,
            labels=spec.labels(),
            mode=types.ServiceMode("replicated", replicas=1),
            update_config=types.UpdateConfig(order="stop-first", parallelism=1),
            endpoint_spec=types.EndpointSpec(mode="dnsrr"),
        )
    except docker.errors.APIError as exc:
        raise AddonRuntimeError(f"could not create add-on {spec.name}: {exc.explanation or exc}") from exc
    return node_id


def addon_service_update(spec: AddonSpec) -> None:
    """Give the running service `spec`'s password (and memory): Swarm stops the old task, then starts the new."""
    client = docker_client()
    current = _service(client, spec.service_name)
    if current is None:
        raise AddonRuntimeError(f"add-on {spec.name} has no service")
    node_id = current["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0].split("==", 1)[1]
    network_id = team_network_ensure(team=spec.team, client=client)
    try:
        client.api.update_service(
            current["ID"],
            version=current["Version"]["Index"],
            task_template=_task_template(spec, network_id=network_id, node_id=node_id),
            name=spec.service_name,
            labels=spec.labels(),
            mode=types.ServiceMode("replicated", replicas=1),
            update_config=types.UpdateConfig(order="stop-first", parallelism=1),
            endpoint_spec=types.EndpointSpec(mode="dnsrr"),
        )
    except docker.errors.APIError as exc:
        raise AddonRuntimeError(f"could not update add-on {spec.name}: {exc.explanation or exc}") from exc


def addon_service_remove(spec: AddonSpec) -> None:
    """Remove the service (if any) and, once its containers are gone, its volume: the data is deleted."""
    client = docker_client()
    current = _service(client, spec.service_name)
    if current is not None:
        try:
            client.api.remove_service(current["ID"])
        except docker.errors.NotFound:
            pass
    deadline = time.monotonic() + CONTAINERS_GONE_TIMEOUT_S
    while _containers(client, spec.service_name, all_states=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        volume = client.api.inspect_volume(spec.volume_name)
    except docker.errors.NotFound:
        return
    if not is_ours(volume.get("Labels")):
        raise AddonRuntimeError(f"volume {spec.volume_name} belongs to another Berth installation; kept")
    for _ in range(20):  # a stopped task's container can linger a moment after Swarm says it is gone
        try:
            client.api.remove_volume(spec.volume_name)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            for container in _containers(client, spec.service_name, all_states=True):
                try:
                    client.api.remove_container(container["Id"], force=True)
                except docker.errors.APIError:
                    pass
            time.sleep(0.5)
    raise AddonRuntimeError(f"volume {spec.volume_name} is still in use; not removed")


def addon_volume_exists(spec: AddonSpec) -> bool:
    try:
        docker_client().api.inspect_volume(spec.volume_name)
        return True
    except docker.errors.NotFound:
        return False


def addon_service_exists(spec: AddonSpec) -> bool:
    return _service(docker_client(), spec.service_name) is not None


def _service(client: docker.DockerClient, name: str) -> dict | None:
    found = [s for s in client.api.services(filters={"name": name}) if s["Spec"]["Name"] == name]
    return found[0] if found and is_ours(found[0]["Spec"].get("Labels")) else None


def _containers(client: docker.DockerClient, service: str, *, all_states: bool = False) -> list[dict]:
    return client.api.containers(all=all_states, filters={"label": f"{LABEL_SWARM_SERVICE}={service}"})


def _exec(spec: AddonSpec, command: list[str]) -> tuple[int, str]:
    """Run `command` in the add-on's running container on this node (where it is pinned)."""
    client = docker_client()
    running = _containers(client, spec.service_name)
    if not running:
        raise AddonRuntimeError(f"add-on {spec.name} is not running")
    exec_id = client.api.exec_create(
        running[0]["Id"], command, environment={"PGPASSWORD": spec.password, "REDISCLI_AUTH": spec.password}
    )
    output = client.api.exec_start(exec_id).decode(errors="replace")
    return client.api.exec_inspect(exec_id)["ExitCode"], output


def _ready_command(spec: AddonSpec) -> list[str]:
    if spec.kind == "postgres":
        return ["psql", "-h", "127.0.0.1", "-U", ADDON_USER, "-d", ADDON_DATABASE, "-tAc", "select 1"]
    return ["redis-cli", "--no-auth-warning", "ping"]


def addon_wait_ready(spec: AddonSpec, *, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait until the server answers its own client with the current password; returns the seconds waited."""
    started = time.monotonic()
    last = "no container yet"
    while time.monotonic() - started < timeout:
        try:
            code, output = _exec(spec, _ready_command(spec))
            if code == 0 and output.strip() in ("1", "PONG"):
                return time.monotonic() - started
            last = output.strip() or f"exit {code}"
        except (AddonRuntimeError, docker.errors.APIError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AddonRuntimeError(f"add-on {spec.name} did not become ready within {timeout:.0f} s: {last}")


def addon_info(spec: AddonSpec) -> dict:
    """What the running server reports: data size in bytes, client connections, node; None when not running."""
    client = docker_client()
    info: dict = {"running": False, "size_bytes": None, "connections": None, "node": None}
    service = _service(client, spec.service_name)
    if service is not None:
        node_id = service["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0].split("==", 1)[1]
        try:
            info["node"] = client.api.inspect_node(node_id)["Description"]["Hostname"]
        except docker.errors.APIError:
            info["node"] = node_id
    try:
        code, output = _exec(spec, ["du", "-sb", KINDS[spec.kind].data_dir])
    except (AddonRuntimeError, docker.errors.APIError):
        return info
    info["running"] = True
    if code == 0 and output.split():
        info["size_bytes"] = int(output.split()[0])
    if spec.kind == "postgres":
        sql = "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()"
        command = ["psql", "-h", "127.0.0.1", "-U", ADDON_USER, "-d", ADDON_DATABASE, "-tAc", sql]
    else:
        command = ["sh", "-c", "redis-cli --no-auth-warning info clients | grep ^connected_clients:"]
    code, output = _exec(spec, command)
    if code == 0:
        digits = output.strip().rpartition(":")[2].strip()
        # our own redis-cli is one of Redis' clients
        info["connections"] = int(digits) - (1 if spec.kind == "redis" else 0) if digits.isdigit() else None
    return info


def addon_client_command(kind: str, url_var: str, args: list[str]) -> str:
    """The shell command a one-off run of the add-on's image runs to reach the server with `$<url_var>`."""
    client = "psql" if kind == "postgres" else "redis-cli --no-auth-warning -u"
    return f'{client} "${url_var}" ' + " ".join(shlex.quote(a) for a in args)

"""Add-on servers (PostgreSQL, Redis) on Swarm: one service each, one replica, its data in a named volume.

- The service is pinned to the node it was first placed on (by default the manager that builds the add-on images:
  they are local images, no registry; `node_id` places it on another node that has the image), and its volume
  lives there; updates are stop-first, so two servers never share one data directory. A lost node's add-on is
  recovered by replacing its service with one pinned elsewhere (addon_service_replace), its data from a backup.
- It joins only its team's overlay network (berth.runtime.swarm.team_network_ensure), with the endpoint mode the
  apps use (dnsrr: no IPVS here); its service name is its host name there. Another team's network has no route
  to it, and it publishes no port.
- The password comes in the service's environment and the start command sets it on every start (PostgreSQL: a
  single-user `ALTER ROLE` before the server starts; Redis: `requirepass`): rotating it is a service update.
- The image holds only Debian's packages (berth.addons.images builds it); the start command is here.
"""

import secrets
import shlex
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import docker
import docker.errors
import requests
from docker import types

from berth.runtime.client import docker_client
from berth.runtime.pull import image_inspect
from berth.runtime.scheduler import (
    APP_CAPABILITIES,
    LABEL_TEAM,
    NO_NEW_PRIVILEGES,
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
            # labelled: on a node other than this one, Swarm creates the volume at the task's start, and only a
            # volume carrying this installation's labels is ever removed by Berth
            mounts=[
                types.Mount(
                    target=kind.data_dir, source=spec.volume_name, type="volume", labels=spec.labels()
                )
            ],
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


def _node_unavailable(node: dict) -> str | None:
    state = (node.get("Status") or {}).get("State")
    availability = (node.get("Spec") or {}).get("Availability")
    return None if state == "ready" and availability == "active" else f"{state}, {availability}"


def addon_node_resolve(node: str) -> str:
    """The id of the Swarm node `node` names (its hostname or id), refused unless it is ready and active: an add-on
    pinned to a node that cannot run it would stay pending."""
    found = [
        n
        for n in docker_client().api.nodes()
        if node in (n["ID"], (n.get("Description") or {}).get("Hostname"))
    ]
    if not found:
        raise AddonRuntimeError(f"no node {node!r} in the swarm")
    unavailable = _node_unavailable(found[0])
    if unavailable:
        raise AddonRuntimeError(f"node {node} is {unavailable}: an add-on cannot start there")
    return found[0]["ID"]


def addon_node_describe(node_id: str) -> tuple[str, str | None]:
    """(hostname, None when the node is ready and active, else its state and availability, e.g. "down, active")."""
    try:
        node = docker_client().api.inspect_node(node_id)
    except docker.errors.NotFound:
        return node_id, "gone from the swarm"
    return (node.get("Description") or {}).get("Hostname") or node_id, _node_unavailable(node)


def addon_local_node() -> str:
    """The id of the node Berth runs on (where add-ons go by default)."""
    return _local_node_id(docker_client())


def addon_node_of(spec: AddonSpec) -> str | None:
    """The id of the node the add-on's service is pinned to; None when it has no service."""
    current = _service(docker_client(), spec.service_name)
    if current is None:
        return None
    return current["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0].split("==", 1)[1]


def addon_service_create(spec: AddonSpec, *, node_id: str | None = None) -> str:
    """Make the add-on's service pinned to `node_id` (default: this node) and, on this node, its volume; returns the
    node id. Idempotent: an existing service of the same name is kept (a retried create)."""
    client = docker_client()
    if image_inspect(addon_image_ref(spec.kind)) is None:
        raise AddonRuntimeError(
            f"image {addon_image_ref(spec.kind)} is missing; build it with `manage.py addon_images_build {spec.kind}`"
        )
    existing = _service(client, spec.service_name)
    if existing is not None:
        return existing["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0].split("==", 1)[1]
    network_id = team_network_ensure(team=spec.team, client=client)
    local = _local_node_id(client)
    node_id = node_id or local
    try:
        if node_id == local:
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


def addon_service_replace(spec: AddonSpec, *, node_id: str, keep_local_volume: bool = True) -> None:
    """Replace the add-on's service by one pinned to `node_id`, with an empty volume there: what recovering a lost
    node's add-on starts from. The old service goes; its volume, on the old node, is left alone (that node may come
    back, and nothing on it is deleted from here). Refused when `node_id` is this node and already holds a volume of
    that name: its data would be mixed with the backup's. `keep_local_volume=False` (undoing a recovery onto this
    node) removes this node's volume, which then holds only what the unfinished recovery wrote."""
    client = docker_client()
    local = _local_node_id(client)
    if keep_local_volume and node_id == local and addon_volume_exists(spec):
        raise AddonRuntimeError(
            f"this node already has the volume {spec.volume_name} (an earlier life of {spec.name}); "
            "its data is kept: restore a backup into the add-on instead, or remove the volume yourself first"
        )
    _service_remove(client, spec)
    if not keep_local_volume and node_id != local:
        _volume_remove(client, spec)
    addon_service_create(spec, node_id=node_id)


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
    _service_remove(client, spec)
    _volume_remove(client, spec)


def _service_remove(client: docker.DockerClient, spec: AddonSpec) -> None:
    current = _service(client, spec.service_name)
    if current is not None:
        try:
            client.api.remove_service(current["ID"])
        except docker.errors.NotFound:
            pass
    deadline = time.monotonic() + CONTAINERS_GONE_TIMEOUT_S
    while _containers(client, spec.service_name, all_states=True) and time.monotonic() < deadline:
        time.sleep(0.5)


def _volume_remove(client: docker.DockerClient, spec: AddonSpec) -> None:
    """This node's volume of the add-on, if there is one and it is this installation's."""
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


def _probe_over_network(spec: AddonSpec) -> tuple[int, str]:
    """The ready command from a job container on the team's network: for a server on another node, where this
    node's engine cannot exec."""
    client = docker_client()
    if spec.kind == "postgres":
        script = "psql -tAc 'select 1'"
    else:
        script = "redis-cli --no-auth-warning ping"
    container_id = _job_create(
        client, spec, job="probe", script=script, env=_job_env(spec), on_team_network=True
    )
    try:
        client.api.start(container_id)
        exit_code = client.api.wait(container_id, timeout=30)["StatusCode"]
        output = client.api.logs(container_id, stdout=True, stderr=True, tail=20).decode(errors="replace")
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise AddonRuntimeError(f"could not probe add-on {spec.name}: {exc}") from exc
    finally:
        _job_remove(client, container_id)
    return exit_code, output


def _task_error(spec: AddonSpec) -> str | None:
    """The latest task's error or pending reason, as Swarm tells it."""
    tasks = docker_client().api.tasks(filters={"service": spec.service_name})
    if not tasks:
        return None
    latest = max(tasks, key=lambda t: t.get("UpdatedAt", ""))
    status = latest.get("Status") or {}
    if status.get("Err"):
        return f"{status.get('State')}: {status['Err']}"
    if status.get("State") == "pending":
        return f"pending: {status.get('Message') or 'not placed yet'}"
    return None


def addon_wait_ready(spec: AddonSpec, *, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait until the server answers its own client with the current password; returns the seconds waited. On this
    node the client runs in the server's container; on another node, in a job container on the team's network."""
    started = time.monotonic()
    last = "no container yet"
    remote = addon_node_of(spec) not in (None, _local_node_id(docker_client()))
    while time.monotonic() - started < timeout:
        try:
            code, output = _probe_over_network(spec) if remote else _exec(spec, _ready_command(spec))
            if code == 0 and output.strip() in ("1", "PONG"):
                return time.monotonic() - started
            last = output.strip()[-300:] or f"exit {code}"
        except (AddonRuntimeError, docker.errors.APIError) as exc:
            last = str(exc)
        if remote:
            last = _task_error(spec) or last  # e.g. "No such image" on that node: say it, not a DNS failure
        time.sleep(0.5 if not remote else 1)
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
        # on another node (addons:create --node) this engine cannot exec: Swarm's task state says whether it runs
        tasks = (
            client.api.tasks(filters={"service": spec.service_name, "desired-state": "running"})
            if service is not None
            else []
        )
        info["running"] = any((t.get("Status") or {}).get("State") == "running" for t in tasks)
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


# --- backups: dumps, restores and verification runs, each a plain container beside the add-on -----------------

LABEL_ADDON_JOB = "org.berth.addon.job"  # capture | restore | verify: a backup's container, removed when done
JOB_OUTPUT_MAX = 64 * 1024  # of a job's stderr kept for its error message
JOB_READ_TIMEOUT_S = 6 * 3600  # a dump of a big database streams for long; the container is killed after this
COUNT_PREFIX = "BERTH-COUNT "
FAILED_MARK = "BERTH-DUMP-FAILED"

# Rows per table, exactly (not the planner's estimate): `schema.table=count`, one a line.
POSTGRES_COUNT_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname) || '=' || "
    "(xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.%I', n.nspname, c.relname), "
    "false, true, '')))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
)

# The counts and the dump see one snapshot: a repeatable-read transaction exports its snapshot, counts rows in
# it, and pg_dump (run from inside psql, so the transaction stays open) dumps that same snapshot. pg_dump writes
# to fd 3, the container's stdout; psql's own output goes nowhere.
POSTGRES_CAPTURE_PSQL = (
    "\\set ON_ERROR_STOP 1\n"
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
    "SELECT pg_export_snapshot() AS snap \\gset\n"
    "\\setenv BERTH_SNAPSHOT :snap\n"
    "\\o /tmp/counts\n"
    f"{POSTGRES_COUNT_SQL};\n"
    "\\o\n"
    f'\\! pg_dump -Fc --snapshot="$BERTH_SNAPSHOT" >&3 || echo {FAILED_MARK} >&2\n'
    "COMMIT;\n"
)
POSTGRES_CAPTURE = rf"""set -e
printf '%s' "$BERTH_PSQL_SCRIPT" > /tmp/capture.sql
psql -X -q -At -f /tmp/capture.sql 3>&1 >/dev/null
sed 's/^/{COUNT_PREFIX}/' /tmp/counts >&2
"""

# Redis forks for the RDB, so its keys are those of one instant; the keys per db are read just before and just
# after, and a verification accepts a count between the two.
REDIS_KEYSPACE = "redis-cli --no-auth-warning info keyspace | tr -d '\\r' | sed -n 's/^db\\([0-9]*\\):keys=\\([0-9]*\\).*/db\\1=\\2/p'"
REDIS_CAPTURE = rf"""set -e
{REDIS_KEYSPACE} | sed 's/^/{COUNT_PREFIX}before /' >&2
redis-cli --no-auth-warning --rdb - 2>/tmp/rdb.err || {{ cat /tmp/rdb.err >&2; echo {FAILED_MARK} >&2; }}
{REDIS_KEYSPACE} | sed 's/^/{COUNT_PREFIX}after /' >&2
"""

BACKUP_DIR = "/tmp"  # the engine extracts an archive into an existing folder
BACKUP_FILE = f"{BACKUP_DIR}/berth-backup"

# A throwaway server of the same image, no network: the backup is restored into it and counted.
POSTGRES_VERIFY = rf"""set -e
D=/tmp/pg; mkdir -p $D /run/postgresql; chown postgres $D /run/postgresql
as_pg() {{ setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }}
as_pg initdb -D $D -U berth --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg pg_ctl -D $D -s -w -o "-c listen_addresses= -k /run/postgresql" -l /tmp/pg.log start
as_pg createdb -h /run/postgresql -U berth berth
as_pg pg_restore --no-owner --exit-on-error -h /run/postgresql -U berth -d berth {BACKUP_FILE}
as_pg psql -X -At -h /run/postgresql -U berth -d berth -c "$BERTH_COUNT_SQL" | sed 's/^/{COUNT_PREFIX}/'
"""
REDIS_VERIFY = rf"""set -e
mkdir -p /tmp/r; cp {BACKUP_FILE} /tmp/r/dump.rdb; chown -R redis /tmp/r
# the server in a subshell that notes its end: a dead child stays a zombie that `kill -0` still finds
( setpriv --reuid=redis --regid=redis --init-groups redis-server --port 0 --unixsocket /tmp/r/s --dir /tmp/r \
  --dbfilename dump.rdb --appendonly no --save '' --logfile /tmp/r/log || true; touch /tmp/r/ended ) &
i=0
until [ "$(redis-cli -s /tmp/r/s ping 2>/dev/null)" = PONG ]; do
  if [ -e /tmp/r/ended ]; then echo 'redis-server refused the backup:'; tail -5 /tmp/r/log; exit 1; fi
  i=$((i+1)); if [ $i -gt 3000 ]; then echo 'the backup did not load within 10 minutes'; exit 1; fi
  sleep 0.2
done
redis-cli -s /tmp/r/s info keyspace | tr -d '\r' | sed -n 's/^db\([0-9]*\):keys=\([0-9]*\).*/{COUNT_PREFIX}db\1=\2/p'
"""

# Into the live server, in one transaction: a failure anywhere rolls back to the data as it was. Tables the
# backup holds are dropped and made again; while that runs, the app's queries on them wait for the commit.
POSTGRES_RESTORE = f"""set -e
pg_restore --single-transaction --clean --if-exists --no-owner -d "$BERTH_ADDON_URL" {BACKUP_FILE}
"""


# Redis, with its server stopped and its volume mounted here: the RDB is loaded by a server of its own in a folder
# beside the data, which writes it out as an AOF (the live server starts from its AOF, appendonly yes); only when
# that succeeded does the new AOF take the old one's place (two renames), so a failure leaves the data as it was.
REDIS_RESTORE = rf"""set -e
R=/data/.berth-restore
rm -rf $R /data/.berth-before; mkdir -p $R; cp {BACKUP_FILE} $R/dump.rdb; chown -R redis $R
( setpriv --reuid=redis --regid=redis --init-groups redis-server --port 0 --unixsocket /tmp/s --dir $R \
  --dbfilename dump.rdb --appendonly no --save '' --logfile /tmp/log || true; touch /tmp/ended ) &
i=0
until [ "$(redis-cli -s /tmp/s ping 2>/dev/null)" = PONG ]; do
  if [ -e /tmp/ended ]; then echo 'redis-server refused the backup:'; tail -5 /tmp/log; rm -rf $R; exit 1; fi
  i=$((i+1)); if [ $i -gt 3000 ]; then echo 'the backup did not load within 10 minutes'; rm -rf $R; exit 1; fi
  sleep 0.2
done
redis-cli -s /tmp/s config set appendonly yes >/dev/null
i=0
until redis-cli -s /tmp/s info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' \
  && redis-cli -s /tmp/s info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0' \
  && [ -n "$(ls $R/appendonlydir/*.manifest 2>/dev/null)" ]; do
  i=$((i+1)); if [ $i -gt 3000 ]; then echo 'the AOF was not written within 10 minutes'; rm -rf $R; exit 1; fi
  sleep 0.2
done
redis-cli -s /tmp/s info persistence | tr -d '\r' | grep -q '^aof_last_bgrewrite_status:ok' || {{ echo 'writing the AOF failed'; rm -rf $R; exit 1; }}
redis-cli -s /tmp/s shutdown >/dev/null 2>&1 || true
while [ ! -e /tmp/ended ]; do sleep 0.1; done
mkdir /data/.berth-before
[ -e /data/appendonlydir ] && mv /data/appendonlydir /data/.berth-before/
[ -e /data/dump.rdb ] && mv /data/dump.rdb /data/.berth-before/
mv $R/appendonlydir /data/appendonlydir
rm -rf $R /data/.berth-before
echo restored
"""


@dataclass
class AddonJobResult:
    exit_code: int
    output: str  # stderr (capture) or all output (restore, verify), at most JOB_OUTPUT_MAX
    counts: dict[str, int]  # table or db -> rows or keys (for Redis: `before db0`, `after db0`)


def _job_env(spec: AddonSpec) -> dict[str, str]:
    if spec.kind == "postgres":
        return {
            "PGHOST": spec.service_name,
            "PGUSER": ADDON_USER,
            "PGDATABASE": ADDON_DATABASE,
            "PGPASSWORD": spec.password,
            "BERTH_ADDON_URL": spec.url,
        }
    return {"REDISCLI_AUTH": spec.password, "BERTH_ADDON_URL": spec.url}


def _job_create(
    client: docker.DockerClient,
    spec: AddonSpec,
    *,
    job: str,
    script: str,
    env: dict[str, str],
    on_team_network: bool,
    volume: tuple[str, str] | None = None,
) -> str:
    labels = {**spec.labels(), LABEL_ADDON_JOB: job}
    if spec.kind == "redis" and on_team_network:
        script = script.replace("redis-cli ", f"redis-cli -h {spec.service_name} -p {KINDS['redis'].port} ")
    try:
        container = client.api.create_container(
            addon_image_ref(spec.kind),
            command=["sh", "-c", script],
            name=f"{spec.service_name}-{job}-{secrets.token_hex(3)}",
            environment=env,
            labels=labels,
            host_config=client.api.create_host_config(
                network_mode=team_network_ensure(team=spec.team, client=client)
                if on_team_network
                else "none",
                # the dump is the stream we read, not a log: nothing of it is written to disk twice
                log_config={"Type": "none" if job == "capture" else "json-file", "Config": {}},
                mem_limit=f"{max(spec.memory_mb, 512)}m",
                security_opt=[NO_NEW_PRIVILEGES],
                cap_drop=["ALL"],
                cap_add=list(APP_CAPABILITIES),
                mounts=[types.Mount(target=volume[1], source=volume[0], type="volume")] if volume else None,
            ),
            stdin_open=False,
            tty=False,
        )
    except docker.errors.APIError as exc:
        raise AddonRuntimeError(
            f"could not start the {job} of {spec.name}: {exc.explanation or exc}"
        ) from exc
    return container["Id"]


def _job_remove(client: docker.DockerClient, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.APIError:
        pass  # already gone; a killed worker's leftovers carry LABEL_ADDON_JOB


def addon_jobs_prune(*, older_than: float) -> list[str]:
    """Remove backup job containers created more than `older_than` seconds ago (a killed worker's); their ids."""
    client = docker_client()
    cutoff = time.time() - older_than
    removed = []
    for container in client.api.containers(all=True, filters={"label": LABEL_ADDON_JOB}):
        if container["Created"] <= cutoff and is_ours(container.get("Labels")):
            _job_remove(client, container["Id"])
            removed.append(container["Id"])
    return removed


def _counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        if line.startswith(COUNT_PREFIX):
            name, _, value = line[len(COUNT_PREFIX) :].rpartition("=")
            if value.strip().isdigit():
                counts[name.strip()] = int(value)
    return counts


def _tail(text: str) -> str:
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith((COUNT_PREFIX, FAILED_MARK))
    ]
    return "\n".join(lines[-10:])


class AddonDump:
    """A backup being taken: iterate `chunks()` for the dump's bytes as the server sends them (pg_dump -Fc or
    redis-cli --rdb, run in a container on the team's network); once the iteration ends, `result` holds the
    exit and the counts taken with it, and an AddonRuntimeError has been raised if the dump failed."""

    def __init__(self, spec: AddonSpec) -> None:
        self.spec = spec
        self.result: AddonJobResult | None = None

    def chunks(self) -> Iterator[bytes]:
        spec = self.spec
        client = docker_client(timeout=JOB_READ_TIMEOUT_S)
        script = POSTGRES_CAPTURE if spec.kind == "postgres" else REDIS_CAPTURE
        env = _job_env(spec) | (
            {"BERTH_PSQL_SCRIPT": POSTGRES_CAPTURE_PSQL} if spec.kind == "postgres" else {}
        )
        container_id = _job_create(client, spec, job="capture", script=script, env=env, on_team_network=True)
        try:
            # attached before the start, so not one byte is missed; stdout and stderr apart (demux)
            stream = client.api.attach(container_id, stdout=True, stderr=True, stream=True, demux=True)
            client.api.start(container_id)
            errors = bytearray()
            for out, err in stream:
                if err and len(errors) < JOB_OUTPUT_MAX:
                    errors += err
                if out:
                    yield out
            exit_code = client.api.wait(container_id, timeout=60)["StatusCode"]
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise AddonRuntimeError(f"the backup of {spec.name} broke off: {exc}") from exc
        finally:
            _job_remove(client, container_id)
        text = errors.decode(errors="replace")
        self.result = AddonJobResult(exit_code=exit_code, output=text, counts=_counts(text))
        if exit_code != 0 or FAILED_MARK in text:
            raise AddonRuntimeError(
                f"the dump of {spec.name} failed (exit {exit_code}): {_tail(text) or 'no message'}"
            )


def _tar_stream(name: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """One file in a tar archive, made as it is read (the engine's put_archive takes a tar)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise AddonRuntimeError(f"the backup is longer than its recorded {size} bytes")
        yield chunk
    if sent != size:
        raise AddonRuntimeError(f"the backup is {sent} bytes, not its recorded {size}")
    yield b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024


def _job_with_file(
    spec: AddonSpec,
    *,
    job: str,
    script: str,
    env: dict[str, str],
    on_team_network: bool,
    size: int,
    chunks: Iterable[bytes],
    check: Callable[[], None],
    timeout: float,
    volume: tuple[str, str] | None = None,
) -> AddonJobResult:
    """Run `script` in a container that has the backup at BACKUP_FILE: the file is streamed in before the start,
    then `check()` (the checksum) decides whether it starts at all."""
    client = docker_client(timeout=int(timeout) + 60)
    container_id = _job_create(
        client, spec, job=job, script=script, env=env, on_team_network=on_team_network, volume=volume
    )
    try:
        try:
            client.api.put_archive(
                container_id, BACKUP_DIR, _tar_stream(BACKUP_FILE.rsplit("/", 1)[1], size, chunks)
            )
        except docker.errors.APIError as exc:
            raise AddonRuntimeError(
                f"could not hand the backup to the {job}: {exc.explanation or exc}"
            ) from exc
        check()
        client.api.start(container_id)
        try:
            exit_code = client.api.wait(container_id, timeout=timeout)["StatusCode"]
        except requests.exceptions.RequestException as exc:
            raise AddonRuntimeError(f"the {job} of {spec.name} took longer than {timeout:.0f} s") from exc
        output = client.api.logs(container_id, stdout=True, stderr=True, tail=200).decode(errors="replace")
    finally:
        _job_remove(client, container_id)
    return AddonJobResult(exit_code=exit_code, output=output[-JOB_OUTPUT_MAX:], counts=_counts(output))


def addon_backup_verify(
    spec: AddonSpec, *, size: int, chunks: Iterable[bytes], check: Callable[[], None], timeout: float
) -> AddonJobResult:
    """Restore a backup into a throwaway server of the add-on's image (no network) and count what it holds:
    rows per table (PostgreSQL), keys per db (Redis)."""
    if spec.kind == "postgres":
        script, env = POSTGRES_VERIFY, {"BERTH_COUNT_SQL": POSTGRES_COUNT_SQL}
    else:
        script, env = REDIS_VERIFY, {}
    return _job_with_file(
        spec,
        job="verify",
        script=script,
        env=env,
        on_team_network=False,
        size=size,
        chunks=chunks,
        check=check,
        timeout=timeout,
    )


def _service_scale(spec: AddonSpec, replicas: int) -> None:
    client = docker_client()
    current = _service(client, spec.service_name)
    if current is None:
        raise AddonRuntimeError(f"add-on {spec.name} has no service")
    try:
        client.api.update_service(
            current["ID"],
            version=current["Version"]["Index"],
            mode=types.ServiceMode("replicated", replicas=replicas),
            fetch_current_spec=True,
        )
    except docker.errors.APIError as exc:
        raise AddonRuntimeError(f"could not scale add-on {spec.name}: {exc.explanation or exc}") from exc
    if replicas == 0:
        deadline = time.monotonic() + CONTAINERS_GONE_TIMEOUT_S
        while _containers(client, spec.service_name) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _containers(client, spec.service_name):
            raise AddonRuntimeError(
                f"add-on {spec.name}'s server did not stop within {CONTAINERS_GONE_TIMEOUT_S} s"
            )


def addon_backup_restore(
    spec: AddonSpec, *, size: int, chunks: Iterable[bytes], check: Callable[[], None], timeout: float
) -> AddonJobResult:
    """Restore a backup into the add-on, all or nothing. PostgreSQL: pg_restore in one transaction while the
    server runs. Redis: the server stops, the RDB becomes its AOF beside the data and takes its place only once
    written (REDIS_RESTORE), the server starts again and is waited for, whatever happened."""
    if spec.kind == "redis":
        _service_scale(spec, 0)
        try:
            return _job_with_file(
                spec,
                job="restore",
                script=REDIS_RESTORE,
                env={},
                on_team_network=False,
                size=size,
                chunks=chunks,
                check=check,
                timeout=timeout,
                volume=(spec.volume_name, KINDS["redis"].data_dir),
            )
        finally:
            _service_scale(spec, 1)
            addon_wait_ready(spec)
    return _job_with_file(
        spec,
        job="restore",
        script=POSTGRES_RESTORE,
        env=_job_env(spec),
        on_team_network=True,
        size=size,
        chunks=chunks,
        check=check,
        timeout=timeout,
    )

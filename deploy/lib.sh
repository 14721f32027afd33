# Shared steps of `make up` and `make test`: each one checks first and acts only when needed (idempotent).
# shellcheck shell=bash
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and starts the Docker engine)"

ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  say "starting the Docker engine"
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    mkdir -p /var/log
    # no systemd (containers, CI): run dockerd detached, logging beside the other services
    setsid dockerd >>/var/log/berth-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 0.5; done
  die "the Docker engine did not start; see /var/log/berth-dockerd.log"
}

ensure_debian_registry_off() {
  # Debian's docker-registry package starts a registry of its own on install (no password, every interface,
  # port 5000): Berth runs its own (`registry` process, with a password), so the packaged one is stopped and
  # kept from starting at boot.
  if [ -d /run/systemd/system ]; then
    if systemctl is-enabled --quiet docker-registry 2>/dev/null || systemctl is-active --quiet docker-registry 2>/dev/null; then
      say "stopping Debian's own docker-registry service (Berth runs its own, with a password)"
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
  elif [ -x /etc/init.d/docker-registry ] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
    say "stopping Debian's own docker-registry service (Berth runs its own, with a password)"
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
}

ensure_insecure_registry() {
  # Docker speaks plain HTTP only to registries it calls insecure; 127.0.0.0/8 is one by default, any other
  # address (the manager's, for more nodes) must be listed in /etc/docker/daemon.json. Reloaded with SIGHUP.
  local registry="$1" config=/etc/docker/daemon.json
  case "$registry" in "" | 127.* | localhost:*) return ;; esac
  if [ -f "$config" ] && grep -q "\"$registry\"" "$config"; then return; fi
  say "listing the registry $registry in $config (insecure-registries: it speaks plain HTTP)"
  mkdir -p /etc/docker
  python3 - "$config" "$registry" <<'PY'
import json, pathlib, sys
path, registry = pathlib.Path(sys.argv[1]), sys.argv[2]
config = json.loads(path.read_text() or "{}") if path.exists() else {}
config["insecure-registries"] = sorted(set(config.get("insecure-registries", [])) | {registry})
path.write_text(json.dumps(config, indent=2) + "\n")
PY
  if [ -f /var/run/docker.pid ] && docker info >/dev/null 2>&1; then
    kill -HUP "$(cat /var/run/docker.pid)"  # insecure-registries is one of the settings a reload applies
  fi
}

ensure_no_new_privileges() {
  # Every container this engine starts (app tasks, builds' steps, one-off runs) runs with no-new-privileges: a
  # setuid binary in a tenant's image cannot raise its privileges. Swarm services have no per-service field for
  # it before Docker API 1.44 (Debian's 20.10 speaks 1.41), so it is the engine's. The option is not one a SIGHUP
  # reloads: it takes effect when the engine starts, so call this before ensure_docker.
  local config="${DOCKER_DAEMON_CONFIG:-/etc/docker/daemon.json}"
  if [ -f "$config" ] && python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("no-new-privileges") is True else 1)' "$config" 2>/dev/null; then
    if docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q no-new-privileges \
      || ! docker info >/dev/null 2>&1; then
      return
    fi
    say "no-new-privileges is in $config but the running engine started before it: restart it to apply (systemctl restart docker)"
    return
  fi
  mkdir -p "$(dirname "$config")"
  python3 - "$config" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
config = json.loads(path.read_text() or "{}") if path.exists() else {}
config["no-new-privileges"] = True
path.write_text(json.dumps(config, indent=2) + "\n")
PY
  if docker info >/dev/null 2>&1; then
    say "set no-new-privileges in $config; the running engine applies it after a restart (systemctl restart docker)"
  else
    say "set no-new-privileges in $config (the engine applies it when it starts)"
  fi
}

# Ports on this machine that no container may open: the dashboard/API, Redis, PostgreSQL, the registry, the Docker
# API over TCP, and the task ports Docker publishes (apps reach each other through the router, by name on their
# team's network, never another team's task directly). Port 80/443 (the router) stays open: an app may call
# another app at its public URL.
BERTH_FIREWALL_CHAIN="${BERTH_FIREWALL_CHAIN:-BERTH-APPS}"
ensure_firewall() {
  # Containers reach the host through their bridges (docker_gwbridge for Swarm tasks, docker0 for builds' steps
  # and plain containers); a packet to one of the host's own addresses goes through INPUT, not FORWARD (where
  # DOCKER-USER sits), so the rules hang off INPUT for those two interfaces only: nothing else (ssh, the nodes'
  # Swarm traffic) can be affected. Only new connections are refused: replies to the router's own connections to
  # tasks come back on ephemeral ports. Idempotent: the chain is rebuilt, the jumps are added once.
  local ports
  ports=$(printf '%s\n' "$@" | sort -un | paste -sd, -)
  if ! command -v iptables >/dev/null 2>&1; then
    say "firewall: iptables is not installed; containers can reach this machine's ports (see deploy/FIREWALL.md)"
    return 0
  fi
  if ! _firewall_apply "$BERTH_FIREWALL_CHAIN" "$ports" >/dev/null 2>&1; then
    say "firewall: could not apply the iptables rules (chain $BERTH_FIREWALL_CHAIN); containers can reach this machine's ports (see deploy/FIREWALL.md)"
    return 0
  fi
  say "firewall: containers cannot open this machine's ports ${ports//,/, } nor other tasks' published ports (iptables chain $BERTH_FIREWALL_CHAIN)"
}

_firewall_apply() {
  local chain="$1" ports="$2" bridge
  iptables -w -N "$chain" 2>/dev/null || iptables -w -F "$chain" || return 1
  iptables -w -A "$chain" -p tcp -m multiport --dports "$ports" -m conntrack --ctstate NEW \
    -j REJECT --reject-with tcp-reset || return 1
  iptables -w -A "$chain" -p tcp --dport 32768:60999 -m conntrack --ctstate NEW \
    -j REJECT --reject-with tcp-reset || return 1
  iptables -w -A "$chain" -j RETURN || return 1
  for bridge in docker_gwbridge docker0; do
    iptables -w -C INPUT -i "$bridge" -j "$chain" 2>/dev/null || iptables -w -I INPUT -i "$bridge" -j "$chain" || return 1
  done
}

remove_firewall() {
  local chain="$BERTH_FIREWALL_CHAIN"
  for bridge in docker_gwbridge docker0; do
    while iptables -w -D INPUT -i "$bridge" -j "$chain" 2>/dev/null; do :; done
  done
  iptables -w -F "$chain" 2>/dev/null || true
  iptables -w -X "$chain" 2>/dev/null || true
}

SWARM_HEARTBEAT=2s
ensure_swarm() {
  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" = active ]; then
    # Swarm notices a dead node after ~3 missed heartbeats: 2 s instead of Docker's 5 s halves failover (measured:
    # replicas serving elsewhere 7.6-9.9 s vs 15-19 s). Only an untuned (default) swarm is changed.
    if [ "$(docker info --format '{{.Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}}' 2>/dev/null)" = 5s ]; then
      docker swarm update --dispatcher-heartbeat "$SWARM_HEARTBEAT" >/dev/null 2>&1 || true
    fi
    return
  fi
  if [ "$state" = pending ] || [ "$state" = error ]; then docker swarm leave --force >/dev/null 2>&1 || true; fi
  local addr
  addr=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if ($i=="src") print $(i+1)}' | head -1)
  say "initialising a one-node swarm (advertise address ${addr:-127.0.0.1})"
  docker swarm init --advertise-addr "${addr:-127.0.0.1}" --dispatcher-heartbeat "$SWARM_HEARTBEAT" >/dev/null
}

ensure_request_log_queue() {
  # The router's access lines reach Berth as datagrams on a Unix socket (berth.observe.traffic). The kernel queues at
  # most net.unix.max_dgram_qlen of them for the reader; HAProxy drops the line when the queue is full. systemd sets
  # 512 on Debian (sysctl.d/50-default.conf); a machine without it keeps the kernel's 10, where a burst of requests
  # lost 174 of 1,000 access lines while the reader waited for a CPU (make test on 2 busy CPUs).
  local want=512 now
  now=$(cat /proc/sys/net/unix/max_dgram_qlen 2>/dev/null || echo "$want")
  if [ "$now" -lt "$want" ]; then
    if echo "$want" > /proc/sys/net/unix/max_dgram_qlen 2>/dev/null; then
      say "net.unix.max_dgram_qlen $now -> $want (the router's access lines)"
    else
      say "net.unix.max_dgram_qlen is $now and cannot be raised here: a burst of requests may lose access lines"
    fi
  fi
}

ensure_redis() {
  local url="${1:-redis://127.0.0.1:6379/0}" dir="$2"
  if redis-cli -u "$url" ping >/dev/null 2>&1; then return; fi
  local port
  port=$(python3 -c 'import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)' "$url")
  say "starting Redis on 127.0.0.1:$port (data in $dir)"
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save 60 1
  for _ in $(seq 1 40); do redis-cli -u "$url" ping >/dev/null 2>&1 && return; sleep 0.25; done
  die "Redis did not start; see $dir/redis.log"
}

ensure_venv() {
  cd "$REPO_DIR"
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  local stamp=.venv/.berth-installed want
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Berth and its dependencies into .venv"
    .venv/bin/pip install -q --upgrade pip
    # compiled below on every CPU: pip compiles each wheel's files one after the other (measured on 2 CPUs: 28-38 s
    # with pip compiling; 14 s installing + 10 s compiling here)
    .venv/bin/pip install -q --no-compile -e ".[dev]"
    # a file that does not compile (a package's sample or template; none today) fails only if it is ever imported;
    # its errors and SyntaxWarnings unshown, as pip's own compiling showed none
    .venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null 2>&1 || true
    echo "$want" > "$stamp"
  fi
  # Berth's own modules compiled now: where PYTHONDONTWRITEBYTECODE is set (some shells and CI runners set it) every
  # process compiled them again at start (measured: `manage.py check` 1.53 -> 1.12 s of CPU). Files already
  # compiled are skipped.
  .venv/bin/python -m compileall -q -j 0 platform >/dev/null
}

systemd_units_update() {
  # UNITS_DIR (/etc/systemd/system): an older Berth's beat, watcher and shipper units give way to berth-daemons,
  # which runs the three now. They are singletons: each is stopped, disabled and its unit file removed (berth.target's
  # Wants= would start it again) before berth-daemons starts, whatever an earlier, interrupted upgrade left. The unit
  # this version adds and the target that names them all are installed; an admin's edits to the other units are
  # kept, and a unit that differs from this version's is named.
  local units=$1 unit file
  for unit in beat watcher shipper; do
    if [ -f "$units/berth-$unit.service" ] || systemctl is-active --quiet "berth-$unit.service" 2>/dev/null; then
      say "berth-$unit: stopped, disabled and removed (berth-daemons runs it now)"
      systemctl disable --now "berth-$unit.service" >/dev/null 2>&1 || true
      rm -f "$units/berth-$unit.service"
    fi
  done
  [ -f "$units/berth-daemons.service" ] || cp "$REPO_DIR/deploy/systemd/berth-daemons.service" "$units/"
  cp "$REPO_DIR/deploy/systemd/berth.target" "$units/"
  systemctl daemon-reload
  systemctl enable berth-daemons.service >/dev/null 2>&1 || die "could not enable berth-daemons.service"
  for file in "$REPO_DIR"/deploy/systemd/*.service; do
    if ! cmp -s "$file" "$units/$(basename "$file")"; then
      say "$units/$(basename "$file") differs from $file: kept (copy it over for this version's settings)"
    fi
  done
}

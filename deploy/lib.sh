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
    .venv/bin/pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

#!/usr/bin/env bash
# `make up`: install what is missing, start what is not running, then run the whole platform in the foreground.
source "$(dirname "$0")/lib.sh"

export BERTH_HOME="${BERTH_HOME:-/var/lib/berth}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export BERTH_WEB_PORT="${BERTH_WEB_PORT:-8000}"
# the private registry every build is pushed to (nodes pull by digest); BERTH_REGISTRY= (empty) turns it off.
# More nodes: set it to this manager's address the nodes reach, e.g. BERTH_REGISTRY=10.0.0.5:5000
export BERTH_REGISTRY="${BERTH_REGISTRY-127.0.0.1:5000}"
mkdir -p "$BERTH_HOME"

ensure_packages docker.io redis-server haproxy git mmdebstrap python3-venv iproute2 ca-certificates docker-registry
ensure_debian_registry_off
ensure_insecure_registry "$BERTH_REGISTRY"
ensure_no_new_privileges
ensure_docker
ensure_swarm
# what app containers must not open on this machine: Berth's own ports (see deploy/FIREWALL.md)
port_of() { python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or sys.argv[2])' "$1" "$2"; }
registry_listen="${BERTH_REGISTRY_LISTEN:-${BERTH_REGISTRY:-127.0.0.1:5000}}"
ensure_firewall "$BERTH_WEB_PORT" "$(port_of "$REDIS_URL" 6379)" 5432 "$(port_of "${DATABASE_URL:-postgres://x}" 5432)" \
  "${registry_listen##*:}" 2375 2376
ensure_redis "$REDIS_URL" "$BERTH_HOME/redis"
ensure_venv

cd "$REPO_DIR"
manage() { .venv/bin/python manage.py "$@"; }
say "migrating the database"
manage migrate --noinput -v0
manage ensure_admin
manage collectstatic --noinput -v0
say "checking the stack image"
manage stack_build

processes=(web worker beat router watcher shipper)
if [ -n "$BERTH_REGISTRY" ]; then
  processes+=(registry)
  say "private registry on ${BERTH_REGISTRY_LISTEN:-$BERTH_REGISTRY} (user ${BERTH_REGISTRY_USER:-berth}, password in ${BERTH_REGISTRY_DIR:-$BERTH_HOME/registry}/password)"
else
  say "BERTH_REGISTRY is empty: no registry, images stay on this node (one node only)"
fi

say "starting Berth: dashboard and API on http://127.0.0.1:$BERTH_WEB_PORT, apps on port ${BERTH_HTTP_PORT:-80} (Ctrl-C stops all)"
exec .venv/bin/honcho --no-prefix start -f deploy/Procfile -d "$REPO_DIR" "${processes[@]}"

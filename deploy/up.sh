#!/usr/bin/env bash
# `make up`: install what is missing, start what is not running, then run the whole platform in the foreground.
source "$(dirname "$0")/lib.sh"

export BERTH_HOME="${BERTH_HOME:-/var/lib/berth}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export BERTH_WEB_PORT="${BERTH_WEB_PORT:-8000}"
# HTTPS (issue 13): the router's TLS port, the dashboard's hostname there and the ACME CA reach every process
# through this environment (honcho passes it on); BERTH_ACME_DIRECTORY empty keeps ACME off.
export BERTH_HTTPS_PORT="${BERTH_HTTPS_PORT:-443}" BERTH_DASHBOARD_HOST="${BERTH_DASHBOARD_HOST:-}"
export BERTH_ACME_DIRECTORY="${BERTH_ACME_DIRECTORY:-}" BERTH_ACME_EMAIL="${BERTH_ACME_EMAIL:-}"
export BERTH_ACME_CA_BUNDLE="${BERTH_ACME_CA_BUNDLE:-}"
# With the dashboard behind the router's TLS, the web process listens on loopback only: nothing but the router
# (and this machine) reaches it, so the X-Forwarded-Proto it trusts can only come from the router.
if [ -n "$BERTH_DASHBOARD_HOST" ]; then
  export BERTH_WEB_BIND=127.0.0.1
else
  export BERTH_WEB_BIND="${BERTH_WEB_BIND:-0.0.0.0}"
fi
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
manage stack_build base trixie
say "checking the add-on images"
manage addon_images_build

processes=(web worker beat router watcher shipper)
if [ -n "$BERTH_REGISTRY" ]; then
  processes+=(registry)
  say "private registry on ${BERTH_REGISTRY_LISTEN:-$BERTH_REGISTRY} (user ${BERTH_REGISTRY_USER:-berth}, password in ${BERTH_REGISTRY_DIR:-$BERTH_HOME/registry}/password)"
else
  say "BERTH_REGISTRY is empty: no registry, images stay on this node (one node only)"
fi

https_note=""
[ "$BERTH_HTTPS_PORT" != 0 ] && https_note=" and $BERTH_HTTPS_PORT (HTTPS)"
dashboard="http://127.0.0.1:$BERTH_WEB_PORT"
if [ -n "$BERTH_DASHBOARD_HOST" ]; then
  dashboard="https://$BERTH_DASHBOARD_HOST$([ "$BERTH_HTTPS_PORT" = 443 ] || echo ":$BERTH_HTTPS_PORT") (web process on 127.0.0.1:$BERTH_WEB_PORT only)"
fi
say "ACME: ${BERTH_ACME_DIRECTORY:-off (BERTH_ACME_DIRECTORY is empty: no certificates are issued)}"
say "starting Berth: dashboard and API on $dashboard, apps on port ${BERTH_HTTP_PORT:-80}$https_note (Ctrl-C stops all)"
exec .venv/bin/honcho --no-prefix start -f deploy/Procfile -d "$REPO_DIR" "${processes[@]}"

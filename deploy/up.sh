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
ensure_request_log_queue
ensure_venv

cd "$REPO_DIR"
source "$REPO_DIR/deploy/processes.sh"
manage() { .venv/bin/python manage.py "$@"; }

processes=(web worker daemons)
if [ -n "$BERTH_REGISTRY" ]; then processes+=(registry); fi

# Already running from this checkout (a `make up` of Berth 0.7 or older: one honcho)? Then this is an upgrade:
# the database migrated, the processes replaced one by one, the router and the apps' tasks left alone.
legacy_honcho=""
if ! platform_running; then legacy_honcho=$(adopt_legacy_platform || true); fi
upgrade=""
if platform_running; then
  if [ -z "$legacy_honcho" ] && [ "$(cat "$RUN_DIR/version" 2>/dev/null)" = "$(platform_version)" ]; then
    say "Berth is already running this version (stop it with Ctrl-C where it runs, or: make down)"
  else
    upgrade=1
    say "Berth is running here: upgrading it in place (its processes one by one; the router and the apps are not restarted)"
    # refuses a downgrade (the database knows migrations this code does not) and a migration unsafe while the old
    # version still serves, in one line
    manage migrations_check || die "not upgraded: nothing was changed (see the line above)"
    backup="$BERTH_HOME/upgrade-backups/before-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
    mkdir -p "$(dirname "$backup")"
    say "backing up the control plane first: $backup (the way back: manage.py restore with the older checkout)"
    manage backup --output "$backup" >/dev/null || die "not upgraded: the control plane's backup failed"
    # the newest three are kept
    ls -1t "$BERTH_HOME"/upgrade-backups/before-*.tar.gz 2>/dev/null | tail -n +4 | xargs -r rm -f
  fi
elif [ "${BERTH_UP_REQUIRE_RUNNING:-}" = 1 ]; then
  die "Berth is not running from $REPO_DIR: nothing to upgrade (start it with make up)"
fi

detach="${BERTH_UP_DETACH:-}"
if [ -z "$detach" ]; then follow_logs_start router "${CONTROL_PROCESSES[@]}"; fi

say "migrating the database"
manage migrate --noinput -v0
manage ensure_admin
manage collectstatic --noinput -v0
say "checking the stack image"
manage stack_build base trixie
say "checking the add-on images"
manage addon_images_build

if [ -n "$BERTH_REGISTRY" ]; then
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

# the router starts once and is left running by upgrades (Ctrl-C or make down stops it)
if [ -z "$(process_pid router)" ]; then process_start router; fi
if [ -n "$upgrade" ]; then
  if [ -n "$legacy_honcho" ]; then
    say "detaching Berth 0.7's processes from honcho (pids $legacy_honcho) so that none stops the others"
    # shellcheck disable=SC2086
    kill -KILL $legacy_honcho 2>/dev/null || true
  fi
  for name in "${CONTROL_PROCESSES[@]}"; do
    if [ "$name" = registry ] && [ -z "$BERTH_REGISTRY" ]; then
      old=$(process_pid registry)
      if [ -n "$old" ]; then process_stop "$old"; fi
      continue
    fi
    process_replace "$name"
  done
  say "upgraded to $(platform_version | cut -c1-12): the router (pid $(process_pid router)) was not restarted"
else
  for name in "${processes[@]}"; do
    if [ -z "$(process_pid "$name")" ]; then process_start "$name"; fi
  done
fi
platform_version >"$RUN_DIR/version"

if [ -n "$detach" ]; then
  say "Berth runs in the background (logs in $LOG_DIR; stop it with make down)"
  exit 0
fi
say "Berth runs: dashboard and API on $dashboard, apps on port ${BERTH_HTTP_PORT:-80}$https_note (Ctrl-C stops it; logs in $LOG_DIR)"
follow_logs_wait

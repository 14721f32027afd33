#!/usr/bin/env bash
# `make up`: install what is missing, start what is not running, then run the whole platform in the foreground.
source "$(dirname "$0")/lib.sh"

export BERTH_HOME="${BERTH_HOME:-/var/lib/berth}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export BERTH_WEB_PORT="${BERTH_WEB_PORT:-8000}"
mkdir -p "$BERTH_HOME"

ensure_packages docker.io redis-server haproxy git mmdebstrap python3-venv iproute2 ca-certificates
ensure_docker
ensure_swarm
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

say "starting Berth: dashboard and API on http://127.0.0.1:$BERTH_WEB_PORT, apps on port ${BERTH_HTTP_PORT:-80} (Ctrl-C stops all)"
exec .venv/bin/honcho --no-prefix start -f deploy/Procfile -d "$REPO_DIR"

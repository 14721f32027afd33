#!/usr/bin/env bash
# `make bench`: the services the tests use (started only if they are not running, and then stopped again at the end,
# by PID), the stack image, then every benchmark in bench/ (bench/run_all.py: one table; JSON in bench/results).
# Arguments go to bench/run_all.py (`deploy/bench.sh --quick`, `deploy/bench.sh push_to_live`).
source "$(dirname "$0")/lib.sh"
started_at=$SECONDS

TEST_HOME="${BERTH_TEST_HOME:-/var/tmp/berth-test}"
PG_PORT="${BERTH_TEST_PG_PORT:-54329}"
SERVICES_REDIS_URL="${BERTH_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"  # where test.sh starts Redis if it must
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

# what runs already is left running; what this script starts, it stops
docker_was_up=0; redis_was_up=0; pg_was_up=0
docker info >/dev/null 2>&1 && docker_was_up=1
redis-cli -u "$SERVICES_REDIS_URL" ping >/dev/null 2>&1 && redis_was_up=1
[ -n "$PG_BIN" ] && runuser -u postgres -- "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && pg_was_up=1

stop_what_we_started() {
  local pid
  if [ "$pg_was_up" = 0 ] && [ -f "$TEST_HOME/postgres/data/postmaster.pid" ]; then
    pid=$(head -1 "$TEST_HOME/postgres/data/postmaster.pid")
    say "stopping the PostgreSQL this run started (PID $pid)"
    kill -INT "$pid" 2>/dev/null || true  # "fast" shutdown
  fi
  if [ "$redis_was_up" = 0 ] && [ -f "$TEST_HOME/redis/redis.pid" ]; then
    pid=$(cat "$TEST_HOME/redis/redis.pid")
    say "stopping the Redis this run started (PID $pid)"
    kill -TERM "$pid" 2>/dev/null || true
  fi
  if [ "$docker_was_up" = 0 ]; then
    if [ -d /run/systemd/system ]; then
      say "stopping the Docker engine this run started"
      systemctl stop docker || true
    elif [ -f /var/run/docker.pid ]; then
      pid=$(cat /var/run/docker.pid)
      say "stopping the Docker engine this run started (PID $pid)"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  fi
}
trap stop_what_we_started EXIT

"$(dirname "$0")/test.sh" --services-only
cd "$REPO_DIR"
export BERTH_BENCH=1
export BERTH_HOME="$TEST_HOME/bench-home"
# the benchmarks flush the Redis database they use: one of their own, not the tests' (15)
export BENCH_REDIS_URL="${BERTH_BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}"
export REDIS_URL="$BENCH_REDIS_URL"
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/berth_bench"
export BERTH_SECRET_KEY=bench-secret-key
mkdir -p "$BERTH_HOME"
psql_admin() { runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PG_PORT" -c "$1" postgres; }
psql_admin "DROP DATABASE IF EXISTS berth_bench WITH (FORCE)"
psql_admin "CREATE DATABASE berth_bench"
.venv/bin/python manage.py migrate -v0
say "stack image"
.venv/bin/python manage.py stack_build base trixie
say "benchmarks"
status=0
.venv/bin/python bench/run_all.py "$@" || status=$?
psql_admin "DROP DATABASE IF EXISTS berth_bench WITH (FORCE)"
say "make bench: $(( (SECONDS - started_at) / 60 )) min $(( (SECONDS - started_at) % 60 )) s in all (services, stack image and benchmarks)"
exit "$status"

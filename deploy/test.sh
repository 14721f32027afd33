#!/usr/bin/env bash
# `make test`: make sure the real services the suite needs run (Docker + swarm, Redis, PostgreSQL, HAProxy), then
# ruff, Django's checks and pytest: the whole suite on PostgreSQL, the database-level tests again on SQLite.
source "$(dirname "$0")/lib.sh"

TEST_HOME="${BERTH_TEST_HOME:-/var/tmp/berth-test}"
PG_PORT="${BERTH_TEST_PG_PORT:-54329}"
PG_DIR="$TEST_HOME/postgres"
mkdir -p "$TEST_HOME"

ensure_packages docker.io redis-server haproxy git mmdebstrap python3-venv iproute2 ca-certificates \
  postgresql docker-registry wrk chromium curl pebble
ensure_docker
ensure_swarm
# a database of its own on the usual Redis (db 15), so a running `make up` on db 0 is not disturbed
export REDIS_URL="${BERTH_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
ensure_redis "$REDIS_URL" "$TEST_HOME/redis"
ensure_request_log_queue

ensure_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if runuser -u postgres -- "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then return; fi
  mkdir -p "$PG_DIR" && chown postgres:postgres "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster for the tests in $PG_DIR"
    rm -rf "$PG_DIR/data"
    runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
  fi
  rm -f "$PG_DIR/data/postmaster.pid"  # a killed earlier run leaves it behind
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
}
ensure_postgres
ensure_venv
if [ "${1:-}" = "--services-only" ]; then exit 0; fi

cd "$REPO_DIR"
export BERTH_HOME="$TEST_HOME/home"
export BERTH_SECRET_KEY=test-secret-key-not-for-production
# one installation id for every tier, xdist worker and platform process of the suite, and of every earlier run on this
# machine: a team network or service a killed run left is this suite's own, never another installation's
export BERTH_INSTALLATION_ID="${BERTH_INSTALLATION_ID:-berth-test-suite}"
rm -rf "$BERTH_HOME" && mkdir -p "$BERTH_HOME"
# bytecode caches written, whatever the calling shell says: the suite starts ~570 Python processes of the platform
# and pytest rewrites each test module's asserts in each of its workers; with PYTHONDONTWRITEBYTECODE set, all of it
# was compiled again every time (ensure_venv compiled the platform; this covers the tests and what it missed)
unset PYTHONDONTWRITEBYTECODE

say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "the floors (import contracts in pyproject.toml)"
(cd platform && ../.venv/bin/lint-imports --config ../pyproject.toml --no-cache)
say "django checks"
.venv/bin/python manage.py check --fail-level WARNING
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || die "models changed without a migration"
# pytest in tiers, each timed, on parallel workers where tests isolate cleanly: every xdist worker has its own Redis
# database, BERTH_HOME and test database (tests/conftest.py). The Docker tier keeps a module's tests on one worker
# (--dist loadfile; all of tests/cluster on one: one 3-node swarm per machine); its tests mostly wait (on builds,
# Swarm, drains, the platform's processes starting), so the tiers without Docker run beside it, one after the other:
# PostgreSQL (a database name of its own), then SQLite (again, those of them that use the database), on Redis
# databases and BERTH_HOMEs of their own, their output shown when the Docker tier ends. Tests marked `serial` (they
# cannot share the Docker engine, e.g. one restarts it) run before the Docker tier, beside the tiers without Docker.
# Every tier runs; any failure fails `make test`.
# three Docker workers: with four, the Docker tier left the CPUs less idle at its end (1,176-1,188 s against 1,225
# for the whole run, session 23), but tests contended (a build timing out, a cached layer removed by another test's
# clean-up) and one to three of them ran again in each run, which took the gain back
DOCKER_WORKERS="${BERTH_TEST_DOCKER_WORKERS:-3}"
FAST_WORKERS="${BERTH_TEST_WORKERS:-2}"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/${BERTH_TEST_PG_DB:-berth}"
PG_FAST_URL="postgres://postgres@127.0.0.1:$PG_PORT/${BERTH_TEST_PG_DB:-berth}_nodocker"
SQLITE_URL="sqlite:///$TEST_HOME/home-sqlite/berth.sqlite3"
failed=()
rm -f "$TEST_HOME/tier-times" "$TEST_HOME"/pytest-*.log "$TEST_HOME/reruns"
rm -rf "$TEST_HOME"/cache-*
# A tier's failed tests run once more, alone, when the parallel tiers have ended: a test that fails again fails the
# tier; one that then passes is named at the end ("failed once, passed alone") rather than hidden. The failures of
# every tier are printed again last, so the tail of a long log names them.
tier() {
  local name="$1" slug="$2" database_url="$3" started=$SECONDS status=0
  shift 3
  say "pytest: $name"
  DATABASE_URL="$database_url" .venv/bin/pytest -o cache_dir="$TEST_HOME/cache-$slug" "$@" 2>&1 \
    | tee "$TEST_HOME/pytest-$slug.log" || status=$?
  echo "$name: $((SECONDS - started)) s" >> "$TEST_HOME/tier-times"
  [ "$status" = 0 ] || [ "$status" = 5 ]  # 5: nothing selected (e.g. a path given to make test)
}
rerun() {
  local name="$1" slug="$2" database_url="$3"
  shift 3
  say "pytest: the failed tests of \"$name\" once more, alone"
  grep -hE '^(FAILED|ERROR) ' "$TEST_HOME/pytest-$slug.log" | sed "s/^/  $name: /" >> "$TEST_HOME/reruns" || true
  DATABASE_URL="$database_url" .venv/bin/pytest -o cache_dir="$TEST_HOME/cache-$slug" --last-failed \
    --last-failed-no-failures none -n 0 "$@" 2>&1 | tee "$TEST_HOME/pytest-$slug-rerun.log"
}
PG_DOCKER=(-m "docker and not serial")
FAST=(-m "not docker and not serial")
SQLITE=(-m "not docker and not faults and not serial")
fast_name="no Docker, PostgreSQL, $FAST_WORKERS workers (beside the Docker tier)"
sqlite_name="no Docker, SQLite, $FAST_WORKERS workers (the database-level tests again, beside the Docker tier)"
rm -rf "$TEST_HOME/home-fast" "$TEST_HOME/home-sqlite" && mkdir -p "$TEST_HOME/home-fast" "$TEST_HOME/home-sqlite"
without_docker() {  # the Redis databases after the Docker tier's workers'
  local status=0
  BERTH_HOME="$TEST_HOME/home-fast" BERTH_TEST_WORKER_OFFSET="$DOCKER_WORKERS" \
    tier "$fast_name" fast "$PG_FAST_URL" "${FAST[@]}" -q -n "$FAST_WORKERS" "$@" || status=1
  BERTH_HOME="$TEST_HOME/home-sqlite" BERTH_TEST_WORKER_OFFSET="$DOCKER_WORKERS" BERTH_TEST_DATABASE_ONLY=1 \
    tier "$sqlite_name" sqlite "$SQLITE_URL" "${SQLITE[@]}" -q -n "$FAST_WORKERS" "$@" || status=$((status | 2))
  return $status
}
# The tiers without Docker run in a session of their own, so in a scheduling group of their own: the kernel shares the
# CPUs between such groups (autogroups: one per session) before it shares a group between its processes, and the
# Docker tier's CPU is mostly spent outside make test's group (the platform processes it starts, each in its own
# session; dockerd; the containers). Renicing these tiers' processes within make test's group (session 24) made the
# images on a new machine 160 -> 104 s, but kept lower for the whole run it left the run as long. Their group's nice
# is raised instead: 10 while the stack images are made (on a new machine ~80 s of mmdebstrap for both CPUs, which
# the Docker tier waits for), then BERTH_TEST_FAST_NICE: the Docker tier, the run's longest, takes the CPUs when it
# wants them and the tiers without Docker the rest; they used to end ~400 s before it, the CPUs ~18 % idle
# meanwhile. Where autogroups are off, the processes' own nice (BERTH_TEST_FAST_NICE from the start) does it. A
# test that starts a process in a session of its own gives that process the usual priority.
FAST_NICE="${BERTH_TEST_FAST_NICE:-5}"
without_docker_session="$TEST_HOME/without-docker.session"
rm -f "$without_docker_session"
# shellcheck disable=SC2016  # expanded by the session's shell
setsid -w bash -c "set -euo pipefail; $(declare -f); $(declare -p FAST SQLITE TEST_HOME fast_name sqlite_name \
  PG_FAST_URL SQLITE_URL DOCKER_WORKERS FAST_WORKERS); "'echo 10 > /proc/self/autogroup 2>/dev/null || true
  renice -n "$1" -p $$ >/dev/null 2>&1 || true; echo $$ > "$2"; shift 2; without_docker "$@"' \
  without-docker "$FAST_NICE" "$without_docker_session" "$@" > /dev/null 2>&1 &
without_docker_pid=$!
# outside make test's process group, so not stopped with it (Ctrl-C, a CI timeout): stopped here (setsid did not
# fork: a background job of a script is no group leader, so its PID is the session's and its group's)
stop_without_docker() { kill -TERM -- "-$without_docker_pid" 2>/dev/null || true; }
trap stop_without_docker EXIT
trap 'stop_without_docker; exit 130' INT
trap 'stop_without_docker; exit 143' TERM
# The stack images and the add-on images, two at a time (each build keeps a CPU busy: two at a time took 84 s on a new
# machine, four at a time 89 s), while the tiers without Docker already run: the Docker tier starts as soon as all are
# made. The other stack variants (node, go, static) are made by the first build that needs one, as on a user's
# machine (once: berth.builds.stack locks each variant for every installation and test worker on the engine).
say "stack images and add-on images (the tiers without Docker run meanwhile)"
images=("stack_build base trixie" "addon_images_build")
pids=()
for i in "${!images[@]}"; do
  # shellcheck disable=SC2086  # the command and its arguments
  .venv/bin/python manage.py ${images[$i]} > "$TEST_HOME/images-$i.log" 2>&1 &
  pids+=($!)
done
images_failed=()
for i in "${!images[@]}"; do
  wait "${pids[$i]}" || images_failed+=("${images[$i]}")
  cat "$TEST_HOME/images-$i.log"
done
{ echo "$FAST_NICE" > "/proc/$(cat "$without_docker_session" || echo "$without_docker_pid")/autogroup"; } 2>/dev/null \
  || true
docker_ok=1
if [ ${#images_failed[@]} = 0 ]; then
  # The serial tier (a test that restarts the Docker engine, so nothing else may use it meanwhile) first, while the
  # tiers without Docker run: it mostly waits for the engine and the app to come back, and at the end of the run
  # it left both CPUs idle for its ~40 s (measured, session 23); beside the other tiers that time is used.
  tier "serial, PostgreSQL" serial "$PG_URL" -m serial "$@" || rerun "serial" serial "$PG_URL" -m serial "$@" \
    || failed+=("serial")
  tier "Docker, PostgreSQL, $DOCKER_WORKERS workers" docker "$PG_URL" "${PG_DOCKER[@]}" -n "$DOCKER_WORKERS" \
    --dist loadfile "$@" || docker_ok=0
else
  say "the images did not build: $(printf '%s; ' "${images_failed[@]}")the Docker tier cannot run"
  failed+=("images")
fi
without_docker_status=0
wait "$without_docker_pid" || without_docker_status=$?
trap - EXIT INT TERM
cat "$TEST_HOME/pytest-fast.log" "$TEST_HOME/pytest-sqlite.log"
[ "$docker_ok" = 1 ] || rerun "Docker" docker "$PG_URL" "${PG_DOCKER[@]}" "$@" || failed+=("Docker")
[ $((without_docker_status & 1)) = 0 ] || BERTH_HOME="$TEST_HOME/home-fast" \
  rerun "no Docker, PostgreSQL" fast "$PG_FAST_URL" "${FAST[@]}" "$@" || failed+=("no Docker, PostgreSQL")
[ $((without_docker_status & 2)) = 0 ] || BERTH_HOME="$TEST_HOME/home-sqlite" BERTH_TEST_DATABASE_ONLY=1 \
  rerun "SQLite" sqlite "$SQLITE_URL" "${SQLITE[@]}" "$@" || failed+=("SQLite")
say "pytest tiers' wall times"
sed 's/^/  /' "$TEST_HOME/tier-times"
if [ -s "$TEST_HOME/reruns" ]; then
  say "tests that failed in their tier and ran once more alone (the tier fails only if they failed again)"
  cat "$TEST_HOME/reruns"
fi
if [ ${#failed[@]} != 0 ]; then
  say "tests that failed twice"
  grep -hE '^(FAILED|ERROR) ' "$TEST_HOME"/pytest-*-rerun.log | sort -u | sed 's/^/  /' || true
  die "tests failed in: $(printf '%s; ' "${failed[@]}")"
fi

#!/usr/bin/env bash
# `make bench`: the same services as the tests, then every benchmark in bench/ (one table each, JSON in bench/results).
source "$(dirname "$0")/lib.sh"
export BERTH_BENCH=1
"$(dirname "$0")/test.sh" --services-only
cd "$REPO_DIR"
export BERTH_HOME="${BERTH_TEST_HOME:-/var/tmp/berth-test}/bench-home"
export REDIS_URL="${BERTH_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export DATABASE_URL="postgres://postgres@127.0.0.1:${BERTH_TEST_PG_PORT:-54329}/berth_bench"
export BERTH_SECRET_KEY=bench-secret-key
mkdir -p "$BERTH_HOME"
runuser -u postgres -- psql -q -h 127.0.0.1 -p "${BERTH_TEST_PG_PORT:-54329}" -c "DROP DATABASE IF EXISTS berth_bench" postgres
runuser -u postgres -- psql -q -h 127.0.0.1 -p "${BERTH_TEST_PG_PORT:-54329}" -c "CREATE DATABASE berth_bench" postgres
.venv/bin/python manage.py migrate -v0
exec .venv/bin/python bench/run_all.py "$@"

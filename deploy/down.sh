#!/usr/bin/env bash
# `make down`: stop every process `make up` started from this checkout, the router too (the apps' tasks run on in
# Swarm and are routed again by the next `make up`).
source "$(dirname "$0")/lib.sh"
export BERTH_HOME="${BERTH_HOME:-/var/lib/berth}"
source "$REPO_DIR/deploy/processes.sh"
legacy_honcho=""
if ! platform_running; then legacy_honcho=$(adopt_legacy_platform || true); fi
if [ -n "$legacy_honcho" ]; then
  # honcho's main process (the first found is the oldest PID, not necessarily the main: TERM all; each stops its own)
  # shellcheck disable=SC2086
  kill -TERM $legacy_honcho 2>/dev/null || true
  say "stopped Berth (honcho)"
  exit 0
fi
platform_running || { say "Berth is not running from $REPO_DIR"; exit 0; }
platform_stop
say "stopped Berth"

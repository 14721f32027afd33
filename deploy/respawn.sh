#!/usr/bin/env bash
# Usage: deploy/respawn.sh COMMAND [ARG...]
#
# Runs COMMAND, and runs it again (after BERTH_RESPAWN_DELAY seconds, 2 by default) whenever it exits non-zero or
# is killed, as systemd's Restart=on-failure would. Under honcho (`make up`) one process that exits stops the
# whole stack: the Celery worker exits on some broker losses (a Redis restart while a task runs), and must come
# back on its own instead. A clean exit (status 0) ends the wrapper too. SIGTERM or SIGINT (honcho's stop, Ctrl-C)
# is passed on as SIGTERM, the wrapper waits for COMMAND to finish, and exits with its status.
set -u

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

delay="${BERTH_RESPAWN_DELAY:-2}"
child=0
stopping=0

stop() {
  stopping=1
  if [ "$child" -gt 0 ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT

while :; do
  # in the background so the trap runs at once (bash defers traps while a foreground command runs)
  "$@" &
  child=$!
  wait "$child"
  status=$?
  # a trapped signal ends `wait` early: wait again until COMMAND itself has finished
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
  done
  child=0
  if [ "$stopping" = 1 ] || [ "$status" = 0 ]; then
    exit "$status"
  fi
  echo "respawn: $1 exited with status $status; starting it again in ${delay}s" >&2
  sleep "$delay" &
  wait $! || true
  if [ "$stopping" = 1 ]; then
    exit "$status"
  fi
done

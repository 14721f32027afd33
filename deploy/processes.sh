# The platform's processes under `make up`, each on its own (issue 19: upgrades that apps never notice).
# shellcheck shell=bash
#
# Every process of deploy/Procfile runs in a session of its own under deploy/respawn.sh: its wrapper's PID is in
# $RUN_DIR/NAME.pid, its output is appended to $LOG_DIR/NAME.log. Nothing holds them together (honcho did, up to
# Berth 0.7: one exit stopped them all, the router with them), so an upgrade replaces them one by one while the
# others, and above all the router, run on. `make up`'s foreground only follows the logs, and Ctrl-C there stops
# every process. Sourced by deploy/up.sh after deploy/lib.sh; BERTH_HOME is set.

RUN_DIR="$BERTH_HOME/run"
LOG_DIR="$BERTH_HOME/log"
# the checkout as /proc/PID/cwd names it (symbolic links resolved)
REPO_REAL="$(cd "$REPO_DIR" && pwd -P)"
# the order an upgrade replaces them in; never the router: it serves the apps (its backends change through its
# admin socket, and a restart would drop the requests on its keep-alive connections)
CONTROL_PROCESSES=(worker daemons registry web)
# processes of an older Berth that `daemons` (one process since issue 17) took over: an upgrade stops them before it
# starts the new one (they are singletons); stopping the platform stops them too
RETIRED_PROCESSES=(beat watcher shipper)

procfile_command() {
  # NAME → its command line in deploy/Procfile, without the respawn wrapper a line may carry (all get one here)
  local line
  line=$(grep -E "^$1:" "$REPO_DIR/deploy/Procfile") || die "deploy/Procfile has no process $1"
  line="${line#*: }"
  printf '%s\n' "${line#deploy/respawn.sh }"
}

_alive() {
  # PID runs, is no zombie, and is this checkout's (a recycled PID of another program is never signalled)
  local pid=$1 state
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$REPO_REAL" ]
}

process_pid() {
  # NAME → the PID running it (its respawn wrapper, or an adopted process of an older Berth), or nothing
  local pid
  pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 0
  if _alive "$pid"; then printf '%s\n' "$pid"; fi
}

process_start() {
  # NAME: start it detached in a session of its own; prints nothing, its PID goes to $RUN_DIR/NAME.pid
  local name=$1 command
  command=$(procfile_command "$name")
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  # not a process group leader (no job control here), so setsid execs in place: $! is the wrapper's PID
  (cd "$REPO_DIR" && exec setsid "$REPO_DIR/deploy/respawn.sh" sh -c "exec $command" \
    >>"$LOG_DIR/$name.log" 2>&1 </dev/null) &
  printf '%s\n' "$!" >"$RUN_DIR/$name.pid"
}

process_wait_gone() {
  # PID SECONDS: wait until it has ended; after SECONDS kill its whole process group (the wrapper and what it runs)
  local pid=$1 seconds=$2 i group
  group=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
  for ((i = 0; i < seconds * 5; i++)); do
    _alive "$pid" || return 0
    sleep 0.2
  done
  say "pid $pid did not stop within ${seconds}s: killing it"
  if [ -n "$group" ] && [ "$group" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then kill -KILL -- "-$group" 2>/dev/null || true; fi
  kill -KILL "$pid" 2>/dev/null || true
}

process_stop() {
  # PID [SECONDS]: SIGTERM (gunicorn ends its requests, a Celery worker its tasks), then wait for it
  local pid=$1
  _alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  process_wait_gone "$pid" "${2:-40}"
}

platform_version() {
  # what runs: the checkout's commit, and a digest of uncommitted changes (an edited tree is a new version)
  printf '%s %s\n' "$(git -C "$REPO_DIR" rev-parse HEAD 2>/dev/null || echo unknown)" \
    "$(git -C "$REPO_DIR" diff HEAD 2>/dev/null | sha256sum | cut -c1-12)"
}

platform_running() {
  # true when any process of this checkout's platform runs (its PID files name live processes)
  local name
  for name in router "${CONTROL_PROCESSES[@]}" "${RETIRED_PROCESSES[@]}"; do
    [ -n "$(process_pid "$name")" ] && return 0
  done
  return 1
}

adopt_legacy_platform() {
  # Berth ≤ 0.7's `make up` ran every process under one honcho (from this checkout): honcho's main process, one
  # forked honcho per process waiting on it, and the processes, each in a session of its own. Their PIDs are
  # written as this one's PID files and the honcho PIDs printed: the caller kills those alone (SIGKILL: honcho can
  # then stop nobody), so the router serves on and the rest are replaced one by one.
  local dir pid command honchos=() child name
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    command=$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline") || continue
    case "$command" in *honcho*deploy/Procfile*) ;; *) continue ;; esac
    [ "$(readlink "$dir/cwd" 2>/dev/null)" = "$REPO_REAL" ] || continue
    honchos+=("$pid")
  done
  [ ${#honchos[@]} -gt 0 ] || return 1
  mkdir -p "$RUN_DIR"
  for pid in "${honchos[@]}"; do
    for child in $(ps -o pid= --ppid "$pid"); do
      command=$(tr '\0' ' ' 2>/dev/null <"/proc/$child/cmdline") || continue
      # honcho ran each command through `/bin/sh -c`: the process to signal is the shell's child (a shell stops
      # at SIGTERM and leaves it running)
      case "$command" in /bin/sh\ -c\ *) child=$(ps -o pid= --ppid "$child" | head -1 | tr -d ' ' || true) ;; esac
      [ -n "$child" ] || continue
      case "$command" in
        *honcho*) continue ;;
        *gunicorn*berth.config.asgi*) name=web ;;
        *celery*berth.config*" worker "*) name=worker ;;
        *celery*berth.config*" beat "*) name=beat ;;
        haproxy* | */haproxy* | *router_run*) name=router ;;
        *"manage.py watch"*) name=watcher ;;
        *ship_logs*) name=shipper ;;
        *"manage.py daemons"*) name=daemons ;;
        *docker-registry*serve* | *registry_run*) name=registry ;;
        *) continue ;;
      esac
      printf '%s\n' "$child" >"$RUN_DIR/$name.pid"
    done
  done
  printf '%s\n' "${honchos[*]}"
}

wait_web() {
  # the web process answers (any HTTP status: /healthz says 503 while Redis or the database is away)
  local i
  for ((i = 0; i < 300; i++)); do
    if curl -s -o /dev/null -m 2 "http://127.0.0.1:${BERTH_WEB_PORT}/healthz"; then return 0; fi
    sleep 0.2
  done
  die "the web process does not answer on 127.0.0.1:${BERTH_WEB_PORT}; see $LOG_DIR/web.log"
}

process_replace() {
  # NAME: the running one (if any) replaced by this checkout's. The worker: the new one starts first, then the
  # old one gets SIGTERM, Celery's warm shutdown: it takes no new task and finishes the running ones (a build, a
  # deploy) before it exits. The web process: the old one stops listening at once and ends the requests it
  # serves (a push's output) within gunicorn's graceful timeout while the new one starts. The others are
  # singletons (one watcher, one beat, one shipper reading the streams, all three in `daemons`; one registry on
  # its port): the old one ends (for `daemons`, an older Berth's separate beat, watcher and shipper too), then the
  # new one starts; what they do is picked up again from Redis, the database and Docker.
  local name=$1 old started=$SECONDS
  old=$(process_pid "$name")
  case "$name" in
    worker)
      process_start worker
      if [ -n "$old" ]; then
        say "worker: the old one finishes its running builds and deploys first (up to ${BERTH_UPGRADE_WORKER_WAIT:-1800}s)"
        process_stop "$old" "${BERTH_UPGRADE_WORKER_WAIT:-1800}"
      fi
      ;;
    web)
      if [ -n "$old" ]; then kill -TERM "$old" 2>/dev/null || true; fi
      process_start web
      wait_web
      if [ -n "$old" ]; then process_wait_gone "$old" 45; fi
      ;;
    daemons)
      local retired pid
      for retired in "${RETIRED_PROCESSES[@]}"; do
        pid=$(process_pid "$retired")
        if [ -n "$pid" ]; then
          process_stop "$pid" 40
          say "$retired: stopped (the daemons process runs it now)"
        fi
        rm -f "$RUN_DIR/$retired.pid"
      done
      if [ -n "$old" ]; then process_stop "$old" 40; fi
      process_start daemons
      ;;
    *)
      if [ -n "$old" ]; then process_stop "$old" 40; fi
      process_start "$name"
      ;;
  esac
  say "$name: running this version (pid $(process_pid "$name"); replaced in $((SECONDS - started)) s)"
}

platform_stop() {
  # every process, the router too (SIGTERM to all at once, then each waited for)
  local name pid pids=()
  for name in "${CONTROL_PROCESSES[@]}" "${RETIRED_PROCESSES[@]}" router; do
    pid=$(process_pid "$name")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do process_wait_gone "$pid" 40; done
  rm -f "$RUN_DIR"/*.pid "$RUN_DIR/version"
}

follow_logs_start() {
  # `make up`'s foreground: NAMES' output as it comes (from before they start); Ctrl-C or the terminal closing
  # stops every process. A background job ignores SIGINT here, so the trap ends the follower itself.
  local files=() name
  mkdir -p "$LOG_DIR"
  for name in "$@"; do files+=("$LOG_DIR/$name.log"); done
  tail -q -n 0 -F "${files[@]}" 2>/dev/null &
  FOLLOWER=$!
  trap 'trap - INT TERM HUP; echo; say "stopping Berth"; kill "$FOLLOWER" 2>/dev/null; platform_stop; exit 0' INT TERM HUP
}

follow_logs_wait() {
  wait "$FOLLOWER"
}

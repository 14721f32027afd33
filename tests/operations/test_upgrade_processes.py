"""deploy/processes.sh, the process control of `make up` and its in-place upgrade, run for real: bash, setsid, the
real deploy/respawn.sh and (for a Berth 0.7 install) the real honcho, over small stand-in programs whose command
lines look like the platform's (the whole platform, upgraded under load, is bench/upgrade_under_load.py).

Checked: each process runs on its own with a PID file; an upgrade replaces every process but the router, the new
worker starting before the old one has finished its task (Celery's warm shutdown stands in as "finish, then exit
0"), and an older Berth's beat, watcher and shipper are stopped for the one `daemons` process that runs the three
now; Berth 0.7's honcho is detached without its processes stopping, and they are replaced the same way; `make
down`'s platform_stop leaves nothing running.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR, free_port, wait_for

STAND_IN = """\
import os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

role = " ".join(sys.argv[1:])
out = os.environ["STAND_IN_OUT"]


def note(text):
    with open(out, "a") as f:
        f.write(f"{text} {os.getpid()} {time.time():.3f}\\n")


def stop(*_):
    if " worker " in f" {role} ":
        time.sleep(1.5)  # the running task ends first
        note("finished-task " + sys.argv[-1])
    note("stopped " + sys.argv[-1])
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
note("started " + sys.argv[-1])
print("started", role, flush=True)
if "gunicorn" in role:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    while True:
        try:
            HTTPServer(("127.0.0.1", int(os.environ["BERTH_WEB_PORT"])), Handler).serve_forever()
        except OSError:  # the old one still holds the port
            time.sleep(0.1)
while True:
    time.sleep(1)
"""

# this version's processes, and (beat, watcher, shipper) an older Berth's, which `daemons` runs now: an upgrade from
# that version finds them running and stops them
PROCFILE = """\
web: python3 stand_in.py gunicorn berth.config.asgi:application web
worker: deploy/respawn.sh python3 stand_in.py celery -A berth.config worker --queues default worker
daemons: python3 stand_in.py manage.py daemons daemons
router: python3 stand_in.py manage.py router_run router
beat: deploy/respawn.sh python3 stand_in.py celery -A berth.config beat --loglevel INFO beat
watcher: python3 stand_in.py manage.py watch watcher
shipper: python3 stand_in.py manage.py ship_logs shipper
"""

NAMES = ("web", "worker", "daemons", "router")
OLDER = ("web", "worker", "beat", "router", "watcher", "shipper")  # an older Berth's processes
RETIRED = ("beat", "watcher", "shipper")


@pytest.fixture
def checkout(tmp_path: Path):
    """A checkout holding the real deploy scripts and the stand-in Procfile; every process it ran is stopped after."""
    if os.geteuid() != 0:
        pytest.skip("deploy/lib.sh runs as root only (make up installs packages)")
    root = tmp_path / "berth"
    (root / "deploy").mkdir(parents=True)
    for script in ("lib.sh", "processes.sh", "respawn.sh"):
        shutil.copy2(REPO_DIR / "deploy" / script, root / "deploy" / script)
    (root / "deploy" / "Procfile").write_text(PROCFILE)
    (root / "stand_in.py").write_text(STAND_IN)
    home = tmp_path / "home"
    home.mkdir()
    env = os.environ | {
        "BERTH_HOME": str(home),
        "BERTH_WEB_PORT": str(free_port()),
        "BERTH_REGISTRY": "",
        "BERTH_RESPAWN_DELAY": "0.2",
        "STAND_IN_OUT": str(tmp_path / "events"),
    }
    box = Checkout(root, home, env, tmp_path / "events")
    yield box
    box.sh("platform_stop", check=False)
    for process in box.started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for pid in running_stand_ins(root):  # what a failed test left running, found by its folder
        box.pids_seen.add(os.getpgid(pid))
    for pid in box.pids_seen:  # anything of ours a failed test left running
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Checkout:
    def __init__(self, root: Path, home: Path, env: dict, events: Path):
        self.root, self.home, self.env, self.events = root, home, env, events
        self.started: list[subprocess.Popen] = []
        self.pids_seen: set[int] = set()

    def sh(self, script: str, check: bool = True) -> str:
        result = subprocess.run(
            ["bash", "-c", f"source deploy/lib.sh && source deploy/processes.sh && {script}"],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def pid(self, name: str) -> int | None:
        out = self.sh(f"process_pid {name}").strip()
        if out:
            self.pids_seen.add(int(out))
        return int(out) if out else None

    def events_of(self, kind: str) -> list[tuple[str, int, float]]:
        lines = self.events.read_text().splitlines() if self.events.exists() else []
        return [(p[1], int(p[2]), float(p[3])) for p in (line.split() for line in lines) if p[0] == kind]

    def alive(self, pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return False
        return state != "Z"


def running_stand_ins(root: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            # python3 stand_in.py …, not the shell or respawn.sh around it
            if len(args) > 1 and args[1] == b"stand_in.py" and cwd == str(root):
                pids.append(int(proc.name))
    return pids


def replace_all(checkout: Checkout) -> str:
    return checkout.sh(
        'for name in "${CONTROL_PROCESSES[@]}"; do [ "$name" = registry ] || process_replace "$name"; done'
    )


def test_each_process_runs_on_its_own_and_an_upgrade_replaces_all_but_the_router(checkout):
    # an older Berth runs: its beat, watcher and shipper each a process
    checkout.sh("for name in router web worker beat watcher shipper; do process_start $name; done")
    wait_for(lambda: len(checkout.events_of("started")) == 6, timeout=30, message="six processes started")
    before = {name: checkout.pid(name) for name in OLDER}
    assert all(before.values()), before
    assert checkout.sh("platform_running && echo yes").strip() == "yes"
    assert (checkout.home / "log" / "worker.log").read_text().startswith("started celery")
    # one process ending (as honcho's did, it stopped all) leaves the others running
    os.kill(before["watcher"], signal.SIGTERM)
    wait_for(lambda: not checkout.alive(before["watcher"]), timeout=10, message="the watcher stopped")
    assert all(checkout.alive(before[name]) for name in OLDER if name != "watcher")

    out = replace_all(checkout)

    after = {name: checkout.pid(name) for name in NAMES + RETIRED}
    assert after["router"] == before["router"], "the router was restarted"
    for name in ("web", "worker"):
        assert after[name] != before[name], f"{name} was not replaced"
    for name in ("web", "worker", *RETIRED):
        assert not checkout.alive(before[name]), f"the old {name} still runs"
    assert after["daemons"], "the daemons process runs"
    assert [after[name] for name in RETIRED] == [None, None, None], "a retired process is still known"
    # the old worker finished its task, and the new worker had started before it did
    finished = checkout.events_of("finished-task")
    assert len(finished) == 1
    new_worker_started = [t for role, _, t in checkout.events_of("started") if role == "worker"][-1]
    assert new_worker_started < finished[0][2]
    assert "worker: running this version" in out and "router:" not in out
    assert "beat: stopped (the daemons process runs it now)" in out
    # the retired singletons ended before the process that runs them now started (its stand-in notes its start
    # once Python is up, which on a busy machine can be after process_replace has returned)
    daemons_started = wait_for(
        lambda: [t for role, _, t in checkout.events_of("started") if role == "daemons"],
        timeout=10,
        message="the daemons process's start noted",
    )[0]
    assert all(t < daemons_started for role, _, t in checkout.events_of("stopped") if role in RETIRED)

    # an upgrade of this version replaces the daemons process like the others
    replace_all(checkout)
    assert checkout.pid("daemons") not in (None, after["daemons"]) and not checkout.alive(after["daemons"])

    # a replaced process behind respawn.sh is a shell for a moment before it execs the program
    wait_for(lambda: len(running_stand_ins(checkout.root)) == 4, timeout=10, message="four processes running")
    checkout.sh("platform_stop")
    assert running_stand_ins(checkout.root) == []


def test_stopping_the_platform_stops_an_older_berths_processes_too(checkout):
    checkout.sh("for name in router web worker beat watcher shipper; do process_start $name; done")
    wait_for(lambda: len(checkout.events_of("started")) == 6, timeout=30, message="six processes started")
    checkout.sh("platform_stop")
    assert running_stand_ins(checkout.root) == []
    assert checkout.sh("platform_running || echo no").strip() == "no"


def test_a_berth_07_honcho_is_detached_and_its_processes_replaced_without_the_router(checkout):
    honcho = subprocess.Popen(
        [str(REPO_DIR / ".venv/bin/honcho"), "--no-prefix", "start", "-f", "deploy/Procfile", "-d", str(checkout.root)],
        cwd=checkout.root, env=checkout.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    checkout.started.append(honcho)
    wait_for(
        lambda: len(checkout.events_of("started")) == 7, timeout=30, message="honcho started seven processes"
    )
    honchos = checkout.sh("adopt_legacy_platform").split()
    assert str(honcho.pid) in honchos
    adopted = {name: checkout.pid(name) for name in NAMES + RETIRED}
    stand_ins = set(running_stand_ins(checkout.root))
    for name in ("web", "router", "daemons", "watcher", "shipper"):
        assert adopted[name] in stand_ins, f"{name}: the shell honcho ran, not the process, was adopted"

    os.kill(honcho.pid, signal.SIGKILL)  # what the upgrade does: honcho alone
    for pid in honchos:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    honcho.wait(timeout=10)
    time.sleep(0.5)
    assert all(checkout.alive(pid) for pid in adopted.values()), "honcho's death stopped a process"

    replace_all(checkout)

    after = {name: checkout.pid(name) for name in NAMES + RETIRED}
    assert after["router"] == adopted["router"] and checkout.alive(adopted["router"])
    for name in ("web", "worker", "daemons", *RETIRED):
        assert after[name] != adopted[name] and not checkout.alive(adopted[name]), name
    assert len(checkout.events_of("finished-task")) == 1, "the old worker did not finish its task"

    # a replaced process behind respawn.sh is a shell for a moment before it execs the program
    wait_for(lambda: len(running_stand_ins(checkout.root)) == 4, timeout=10, message="four processes running")
    checkout.sh("platform_stop")
    assert running_stand_ins(checkout.root) == []


def test_a_checkout_reached_through_a_symbolic_link_finds_its_running_processes(checkout, tmp_path):
    """/proc/PID/cwd names the real folder: a checkout used through a link must still know its processes (else
    `make up` would start a second Berth on the same ports)."""
    link = tmp_path / "berth-link"
    link.symlink_to(checkout.root)
    checkout.root = link
    checkout.env = checkout.env | {"PWD": str(link)}  # as a shell that cd'd into the link says where it is
    checkout.sh("process_start watcher")
    wait_for(lambda: len(checkout.events_of("started")) == 1, timeout=30, message="the watcher started")
    assert checkout.pid("watcher"), "a process started from the link is not found again"
    assert checkout.sh("platform_running && echo yes").strip() == "yes"
    checkout.sh("platform_stop")
    assert running_stand_ins(checkout.root.resolve()) == []

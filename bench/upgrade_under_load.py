"""Benchmark: an upgrade of a running Berth under load (issue 19). The previous tagged version is checked out into a
folder of its own and started with its own `make up` (deploy/up.sh, in the background, on private ports: web,
router, Redis database 14 as every benchmark, SQLite in its BERTH_HOME, no registry); two apps are pushed and `wrk` drives keep-alive
load at each through its router; a push whose build takes ~45 s (a bin/post_compile that sleeps) starts; the
folder is moved to this checkout's commit and its deploy/upgrade.sh runs. Then: failed requests per app (goal 0),
the push's outcome (goal: exit 0 and the new release answering), the router's PID before and after (goal: the
same), how long each step took, and a push after the upgrade (goal: live).

    .venv/bin/python bench/upgrade_under_load.py [--from v0.7.0] [--to HEAD] [--connections 8]

Commit first: the folder is a clone of this repository, `--to` is a commit (HEAD by default). Stops what it
started by PID (deploy/down.sh of the folder, which knows the PIDs) and removes the apps' services, images and team
network.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import APP_PY, figure, print_table, save_figures

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path("/var/tmp/berth-upgrade-bench")
TEAM = "upgrade-bench"
APPS = ("upgrade-bench-a", "upgrade-bench-b")
MAX_WRK_SECONDS = 900
PUSH_TIMEOUT_S = 600
V07_COMMIT = "4f1660b52581"  # the last commit of Berth 0.7


TENANT = """
from django.contrib.auth import get_user_model
from berth.accounts.services import team_create, token_create
from berth.apps.services import app_create
user = get_user_model().objects.create_user(username="bench", email="bench@example.test", password="x")
team = team_create(name={team!r}, actor=user)
_, token = token_create(user=user, name="bench")
for name in {apps!r}:
    app_create(team=team, name=name, actor=user)
print("TOKEN=" + token)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 900) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


class Source:
    def __init__(self, path: Path, url: str):
        self.path = path
        path.mkdir(parents=True)
        for args in (
            ["init", "-q", "-b", "main"],
            ["config", "user.email", "bench@example.test"],
            ["config", "user.name", "bench"],
            ["remote", "add", "berth", url],
        ):
            run(["git", *args], cwd=path)

    def push(self, message: str, *, slow_build_s: int = 0) -> subprocess.Popen:
        (self.path / "requirements.txt").write_text("")
        (self.path / "Procfile").write_text("web: python app.py\n")
        (self.path / "app.py").write_text(APP_PY.format(message=message))
        hook = self.path / "bin" / "post_compile"
        if slow_build_s:
            hook.parent.mkdir(exist_ok=True)
            hook.write_text(f"echo 'a slow build: {slow_build_s} s'\nsleep {slow_build_s}\n")
        elif hook.exists():
            hook.unlink()
        run(["git", "add", "-A"], cwd=self.path)
        run(["git", "commit", "-q", "-m", message], cwd=self.path)
        return subprocess.Popen(
            ["git", "push", "berth", "main"],
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def answer(port: int, host: str) -> str:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return f"{response.status} {response.read().decode(errors='replace').strip()}"
    except OSError as error:
        return f"error {error}"
    finally:
        connection.close()


def wait_answer(port: int, host: str, expected: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if answer(port, host) == f"200 {expected}":
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{host} never answered {expected!r} (last: {answer(port, host)})")


def start_wrk(port: int, host: str, connections: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{MAX_WRK_SECONDS}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop_wrk(process: subprocess.Popen) -> dict:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0) + (
        int(non_2xx.group(1)) if non_2xx else 0
    )
    return {"total": total, "failed": failed, "wrk": out}


def router_pids(home: Path) -> set[int]:
    """HAProxy processes whose command line names this platform's router folder."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "haproxy" in command.split(" ")[0] and str(home) in command:
            pids.add(int(proc.name))
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        help="the version running first (a tag or commit; default v0.7.0)",
    )
    parser.add_argument("--to", default="HEAD", help="the version upgraded to (a commit of this repository)")
    parser.add_argument("--connections", type=int, default=8, help="wrk's keep-alive connections per app")
    parser.add_argument(
        "--slow-build", type=int, default=45, help="seconds the build during the upgrade sleeps"
    )
    args = parser.parse_args()
    if args.source is None:
        # Berth 0.7 (its make up under one honcho): the tag where it exists, else its last commit
        tagged = subprocess.run(["git", "rev-parse", "--verify", "-q", "v0.7.0^{commit}"], cwd=REPO,
                                capture_output=True, text=True)  # fmt: skip
        args.source = "v0.7.0" if tagged.returncode == 0 else V07_COMMIT
    source = run(["git", "rev-parse", "--verify", f"{args.source}^{{commit}}"], cwd=REPO).strip()
    target = run(["git", "rev-parse", "--verify", f"{args.to}^{{commit}}"], cwd=REPO).strip()

    checkout, home = WORK / "berth", WORK / "home"
    if (checkout / "deploy" / "down.sh").exists():  # an earlier, killed run's platform
        subprocess.run(
            ["deploy/down.sh"], cwd=checkout, env=os.environ | {"BERTH_HOME": str(home)}, check=False
        )
    # an earlier run's .venv is kept (same path, so its editable install still points here): make up refreshes it
    kept_venv = Path(f"{WORK}-venv")
    if (checkout / ".venv").is_dir() and not kept_venv.exists():
        (checkout / ".venv").rename(kept_venv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    run(["git", "clone", "-q", str(REPO), str(checkout)], cwd=WORK)
    if kept_venv.is_dir():
        kept_venv.rename(checkout / ".venv")
    run(["git", "checkout", "-q", source], cwd=checkout)

    web_port, http_port = free_port(), free_port()
    # `make bench`'s Redis database (tests/conftest.py gives the test suite's workers every other one but 0)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    subprocess.run(["redis-cli", "-u", redis_url, "flushdb"], capture_output=True, check=False)
    env = os.environ | {
        "BERTH_HOME": str(home),
        "REDIS_URL": redis_url,
        "BERTH_WEB_PORT": str(web_port),
        "BERTH_HTTP_PORT": str(http_port),
        "BERTH_HTTPS_PORT": "0",
        "BERTH_REGISTRY": "",
        "BERTH_SECRET_KEY": "upgrade-bench",
        "BERTH_INSTALLATION_ID": "berth-upgrade-bench",
        "BERTH_FIREWALL_CHAIN": "BERTH-UPGRADE-BENCH",
    }
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    rows, results = [], {"from": source, "to": target}
    started = time.monotonic()
    up_log = open(WORK / "up-old.log", "w")
    old_up = subprocess.Popen(["deploy/up.sh"], cwd=checkout, env=env, stdout=up_log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    loads: dict[str, subprocess.Popen] = {}
    try:
        deadline = time.monotonic() + 900
        while answer(web_port, "x").startswith("error") and time.monotonic() < deadline:
            if old_up.poll() is not None:
                raise SystemExit(f"the old make up ended ({old_up.returncode}): see {WORK / 'up-old.log'}")
            time.sleep(1)
        rows.append(
            [
                "old version up (venv, images, migrate, start)",
                f"{time.monotonic() - started:.1f} s",
                source[:12],
            ]
        )
        manage = [str(checkout / ".venv/bin/python"), "manage.py", "shell", "-c"]
        out = run([*manage, TENANT.format(team=TEAM, apps=list(APPS))], cwd=checkout, env=env)
        token = re.search(r"TOKEN=(\S+)", out).group(1)
        sources = {
            name: Source(WORK / "src" / name, f"http://git:{token}@127.0.0.1:{web_port}/git/{name}.git")
            for name in APPS
        }
        for name, src in sources.items():
            push = src.push(f"{name} v1")
            out, _ = push.communicate(timeout=PUSH_TIMEOUT_S)
            if push.returncode != 0:
                raise SystemExit(f"the first push of {name} failed:\n{out}")
            wait_answer(http_port, f"{name}.localhost", f"{name} v1", 120)
        routers_before = router_pids(home)
        for name in APPS:
            loads[name] = start_wrk(http_port, f"{name}.localhost", args.connections)
        time.sleep(3)

        # a build that runs through the upgrade, then the upgrade itself
        pushing = sources[APPS[0]].push(f"{APPS[0]} v2", slow_build_s=args.slow_build)
        push_started = time.monotonic()
        time.sleep(5)  # the build has started: the worker has taken it
        run(["git", "fetch", "-q", "origin"], cwd=checkout)
        run(["git", "checkout", "-q", target], cwd=checkout)
        upgrade_started = time.monotonic()
        upgrade = subprocess.run(["deploy/upgrade.sh"], cwd=checkout, env=env, capture_output=True, text=True,
                                 timeout=1800)  # fmt: skip
        upgrade_s = time.monotonic() - upgrade_started
        results["upgrade_s"] = round(upgrade_s, 1)
        (WORK / "upgrade.log").write_text(upgrade.stdout + upgrade.stderr)
        if upgrade.returncode != 0:
            raise SystemExit(
                f"deploy/upgrade.sh failed ({upgrade.returncode}):\n{upgrade.stdout}\n{upgrade.stderr}"
            )
        rows.append(
            ["deploy/upgrade.sh (migrate, backup, processes one by one)", f"{upgrade_s:.1f} s", "exit 0"]
        )
        push_out, _ = pushing.communicate(timeout=PUSH_TIMEOUT_S)
        push_s = time.monotonic() - push_started
        (WORK / "push-during-upgrade.log").write_text(push_out)
        wait_answer(http_port, f"{APPS[0]}.localhost", f"{APPS[0]} v2", 120)
        rows.append(["push whose build ran through the upgrade", f"{push_s:.1f} s",
                     f"exit {pushing.returncode}, v2 answers"])  # fmt: skip
        results["push_during_upgrade_exit"] = pushing.returncode
        time.sleep(3)
        for name, process in loads.items():
            load = stop_wrk(process)
            rows.append([f"keep-alive load on {name} through the upgrade", f"{load['failed']} failed",
                         f"of {load['total']:,} requests"])  # fmt: skip
            results[f"load_{name}"] = {"failed": load["failed"], "total": load["total"]}
        loads.clear()
        routers_after = router_pids(home)
        same = bool(routers_before) and routers_before <= routers_after
        rows.append(["router processes before / after", f"{sorted(routers_before)}", f"{sorted(routers_after)}"
                     + (" (not restarted)" if same else " (RESTARTED)")])  # fmt: skip
        results["router_not_restarted"] = same

        after = sources[APPS[1]].push(f"{APPS[1]} v2")
        after_started = time.monotonic()
        out, _ = after.communicate(timeout=PUSH_TIMEOUT_S)
        live_s = (
            wait_answer(http_port, f"{APPS[1]}.localhost", f"{APPS[1]} v2", 120)
            + time.monotonic()
            - after_started
        )
        rows.append(["a push after the upgrade", f"{live_s:.1f} s", f"exit {after.returncode}, v2 answers"])
        results["push_after_exit"] = after.returncode
        version = (home / "run" / "version").read_text().split()[0]
        rows.append(["the version running now", version[:12], "= --to" if version == target else "≠ --to"])
    finally:
        for process in loads.values():
            process.kill()
        if (checkout / "deploy" / "down.sh").exists():
            subprocess.run(["deploy/down.sh"], cwd=checkout, env=env, capture_output=True, check=False)
        if old_up.poll() is None:
            os.killpg(old_up.pid, signal.SIGTERM)
            try:
                old_up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(old_up.pid, signal.SIGKILL)
        cleanup(checkout, env)
    print_table(f"Upgrade under load: {source[:12]} → {target[:12]}", ["step", "figure", ""], rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "upgrade_under_load.json").write_text(json.dumps(results, indent=2) + "\n")
    failed = sum(v["failed"] for k, v in results.items() if k.startswith("load_"))
    total = sum(v["total"] for k, v in results.items() if k.startswith("load_"))
    save_figures(
        "upgrade_under_load",
        [
            figure(
                f"failed requests on 2 apps through an upgrade {args.source} → {args.to}",
                [failed] if total else [],
                "requests",
                goal="0",
                limit=0,
                note=f"of {total:,}; the push building through it exit {results.get('push_during_upgrade_exit')}, "
                f"router {'not ' if results.get('router_not_restarted') else ''}restarted",
            ),
            figure("upgrade (deploy/upgrade.sh) wall time", [results.get("upgrade_s")], "s"),
        ],
    )
    if (
        failed
        or results.get("push_during_upgrade_exit")
        or results.get("push_after_exit")
        or not results.get("router_not_restarted")
    ):
        sys.exit(1)


def cleanup(checkout: Path, env: dict) -> None:
    """The apps' services and images, the team's network, the bench's firewall chain."""
    services = subprocess.run(["docker", "service", "ls", "-q", "--filter", "label=org.berth.app"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
    for service in services:
        labels = subprocess.run(["docker", "service", "inspect", "-f", "{{index .Spec.Labels \"org.berth.app\"}}",
                                 service], capture_output=True, text=True).stdout.strip()  # fmt: skip
        if labels in APPS:
            subprocess.run(["docker", "service", "rm", service], capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
        names = subprocess.run(["docker", "inspect", "-f", "{{index .Config.Labels \"org.berth.app\"}}", *left],
                               capture_output=True, text=True).stdout.split() if left else []  # fmt: skip
        if not set(names) & set(APPS):
            break
        time.sleep(1)
    for name in APPS:
        images = subprocess.run(
            ["docker", "images", "-q", f"berth/{name}"], capture_output=True, text=True
        ).stdout
        for image in set(images.split()):
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    networks = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True
    )
    for network in networks.stdout.split():
        if network.startswith(f"berth-team-{TEAM}"):
            subprocess.run(["docker", "network", "rm", network], capture_output=True)
    lib = checkout / "deploy" / "lib.sh"
    if lib.exists():
        subprocess.run(["bash", "-c", f"source {lib} && remove_firewall"], env=env, capture_output=True)


if __name__ == "__main__":
    main()

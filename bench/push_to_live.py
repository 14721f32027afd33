"""Benchmark: `git push` → release live (answering through the router), cold and warm, beside a raw `docker build`.

    .venv/bin/python bench/push_to_live.py [--runs 5]

Stands up a whole Berth of its own on this machine: HAProxy on a free port, gunicorn+uvicorn, a Celery worker and
the watcher, on a PostgreSQL database of its own (berth_bench_push on 127.0.0.1:54329, dropped at the end) and
Redis db 12. The sample is tests/fixtures/apps/python (Flask from PyPI, through this machine's HTTPS proxy).

- cold: the first push of a new app whose requirements.txt no earlier build has seen (pip really downloads and
  installs; the stack image is present). One new app per run.
- warm: a code-only change (app.py edited) pushed to an app that is live.

Each is timed from the start of `git push` until the router first serves the new code (polled every 20 ms while
the push runs), and until `git push` returns (the old release is removed after, in the background). Beside it, a raw
`DOCKER_BUILDKIT=0 docker build` of the same rendered Dockerfile and context (the one Berth's builder sends) under
the same cold / warm conditions: the difference is Berth's own overhead (git over HTTP, the hook, queueing, the
release and a health-gated cut-over). Medians of --runs. Prints a table, writes bench/results/push_to_live.json.
Everything it starts it stops by PID; services, images and the database it made are removed.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "apps" / "python"
DB_NAME = "berth_bench_push"
PG = "postgres://postgres@127.0.0.1:54329"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PUSH_TIMEOUT_S = 600
APP_PREFIX = "bench-push-"
# when the pusher sees each phase begin (seconds from the start of `git push`)
PHASES = {
    "queued": "-----> Build ",
    "detected": "app detected",
    "built": "-----> Built ",
    "releasing": "-----> Releasing v",
    "ready": "-----> Ready in",
    "live": " is live at ",
    "released": "-----> Released v",
}

sys.path[:0] = [str(REPO), str(REPO / "platform"), str(REPO / "bench")]
WORK = Path(tempfile.mkdtemp(prefix="berth-bench-push-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="berth.config.settings",
    BERTH_SECRET_KEY=os.environ.get("BERTH_SECRET_KEY", "bench"),
    BERTH_HOME=str(WORK / "home"),
    DATABASE_URL=f"{PG}/{DB_NAME}",
    REDIS_URL=REDIS_URL,
    BERTH_ROUTER_DIR=str(WORK / "router"),
)

from bench_platform import Platform, database, remove_apps  # noqa: E402
from common import figure, print_table, push_timings, save_figures  # noqa: E402


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    docker = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True
    )
    return (
        f"{os.cpu_count()} × {cpu}, {mem_kb / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}, "
        f"Docker {docker.stdout.strip()}"
    )


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=PUSH_TIMEOUT_S
    )


class App:
    """A work tree of the sample pushed to one app."""

    def __init__(self, berth: Platform, token: str, name: str):
        self.berth, self.name = berth, name
        self.path = WORK / "src" / name
        shutil.copytree(SAMPLE, self.path)
        # a requirements.txt no build has seen: the first push really installs from PyPI
        requirements = self.path / "requirements.txt"
        requirements.write_text(f"# bench {uuid.uuid4()}\n{requirements.read_text()}")
        git(self.path, "init", "-q", "-b", "main")
        git(self.path, "config", "user.email", "bench@example.test")
        git(self.path, "config", "user.name", "bench")
        git(
            self.path,
            "remote",
            "add",
            "berth",
            berth.web_url.replace("http://", f"http://b:{token}@") + f"/git/{name}.git",
        )
        self.edits = 0

    def edit(self) -> str:
        """A code-only change; returns the text the app will answer with."""
        self.edits += 1
        marker = f"bench edit {self.edits} {uuid.uuid4().hex[:8]}"
        app_py = self.path / "app.py"
        app_py.write_text(
            re.sub(r'return f"hello[^"]*\\n"', f'return f"hello {marker}\\\\n"', app_py.read_text())
        )
        return f"hello {marker}"

    def serving(self, expected: str) -> bool:
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{self.berth.router_port}/",
                headers={"Host": f"{self.name}.localhost"},
                timeout=5,
            )
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and answer.text.startswith(expected)

    def push_until_live(self, expected: str) -> dict:
        """Push, timing when the router first serves the new code (polled every 20 ms from another thread while
        the push runs) and when `git push` returns (the old release is removed after it, in the background)."""
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", expected)
        served: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            deadline = time.monotonic() + PUSH_TIMEOUT_S
            while not stop.is_set() and time.monotonic() < deadline:
                if self.serving(expected):
                    served.append(time.monotonic())
                    return
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        started = time.monotonic()
        poller.start()
        # read line by line to time the phases as the pusher sees them
        process = subprocess.Popen(
            ["git", "push", "berth", "main"], cwd=self.path, stderr=subprocess.PIPE, text=True
        )
        lines, marks = [], {}
        for line in process.stderr:
            lines.append(line)
            for name, marker in PHASES.items():
                if name not in marks and marker in line:
                    marks[name] = time.monotonic() - started
        process.wait(timeout=PUSH_TIMEOUT_S)
        pushed = time.monotonic()
        stderr = "".join(lines)
        if process.returncode != 0:
            stop.set()
            raise RuntimeError(f"push to {self.name} failed:\n{stderr[-3000:]}")
        poller.join(timeout=60)
        stop.set()
        if not served:
            from berth.routing.haproxy import admin_command

            # what the router holds, for whoever reads the failure
            print(stderr[-2000:], file=sys.stderr)
            for command in ("show servers state", "show map"):
                print(f"$ {command}\n{admin_command(command)}", file=sys.stderr)
            raise RuntimeError(f"{self.name} never served {expected!r}")
        return {
            "push_to_live_s": served[0] - started,
            "git_push_s": pushed - started,
            **push_timings(stderr),
            "phases_s": marks,
        }


def raw_docker_builds(runs: int) -> dict:
    """Raw builds of the context Berth's builder sends: cold (unseen requirements) and warm (code-only change)."""
    from berth.builds.builder import build_context, layers_created
    from berth.builds.buildpacks import detect, render_dockerfile
    from berth.builds.services import build_ca_bundle as _ca_bundle
    from berth.builds.stack import stack_image_ref

    tag = f"berth-bench/push-raw:{uuid.uuid4().hex[:8]}"
    created: list[list[str]] = []

    def context_dir(run: int) -> Path:
        source = WORK / f"raw-src-{run}"
        shutil.copytree(SAMPLE, source)
        requirements = source / "requirements.txt"
        requirements.write_text(f"# bench {uuid.uuid4()}\n{requirements.read_text()}")
        buildpack = detect(source)
        dockerfile = render_dockerfile(buildpack, source, stack_image=stack_image_ref(buildpack.stack))
        target = WORK / f"raw-context-{run}"
        context = build_context(
            source_dir=source, buildpack=buildpack, dockerfile=dockerfile, ca_bundle=_ca_bundle()
        )
        with context, tarfile.open(fileobj=context) as tar:
            tar.extractall(target, filter="tar")
        return target

    def build(directory: Path) -> float:
        started = time.monotonic()
        done = subprocess.run(
            ["docker", "build", "--label", "org.berth.bench=1", "-t", tag, str(directory)],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            check=True,
            timeout=PUSH_TIMEOUT_S,
        )
        created.append(done.stdout.splitlines())
        return time.monotonic() - started

    cold, warm = [], []
    try:
        for run in range(runs):
            cold.append(build(context_dir(run)))
        directory = WORK / "raw-context-0"
        for run in range(runs):
            app_py = directory / "app" / "app.py"
            app_py.write_text(app_py.read_text() + f"# bench edit {run} {uuid.uuid4()}\n")
            warm.append(build(directory))
    finally:
        import docker.errors
        from berth.runtime.client import docker_client

        client = docker_client()
        for lines in reversed(created):
            for layer in layers_created(lines):
                try:
                    client.images.remove(layer, force=True, noprune=True)
                except docker.errors.APIError:
                    pass
    return {"cold_s": cold, "warm_s": warm}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = max(1, min(args.runs, 20))

    import logging

    import redis

    logging.getLogger("httpx").setLevel(logging.WARNING)
    redis.Redis.from_url(REDIS_URL).flushdb()
    database(DB_NAME, "create")
    (WORK / "home").mkdir(parents=True)
    import django

    django.setup()
    berth = Platform(WORK)
    names: list[str] = []
    try:
        berth.start()
        from berth.accounts.services import team_create, token_create
        from berth.apps.services import app_create
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(
            username="bench", email="bench@example.test", password="x-bench-1"
        )
        team = team_create(name="bench", actor=user)
        _, token = token_create(user=user, name="bench")

        cold, warm = [], []
        apps = []
        for run in range(runs):
            name = f"{APP_PREFIX}{uuid.uuid4().hex[:6]}"
            names.append(name)
            app_create(team=team, name=name, actor=user)
            app = App(berth, token, name)
            apps.append(app)
            cold.append(app.push_until_live("hello from python"))
            print(f"cold {run + 1}/{runs}: {cold[-1]['push_to_live_s']:.2f}s", flush=True)
        for run in range(runs):
            expected = apps[0].edit()
            warm.append(apps[0].push_until_live(expected))
            print(f"warm {run + 1}/{runs}: {warm[-1]['push_to_live_s']:.2f}s", flush=True)
        raw = raw_docker_builds(runs)
    finally:
        # the processes first: a failed removal (the Docker engine restarted, say) must not leave them running
        berth.stop()
        try:
            remove_apps(names, prefix=APP_PREFIX)
        except Exception as error:  # reported; the database and Redis are still cleaned below
            print(f"removing the bench apps failed: {error!r}", file=sys.stderr)
        # the deployer's own split of each cut-over (route + drain), and the background removal of the old services
        cutovers = [
            line.split("INFO/ForkPoolWorker-")[-1].split("] ", 1)[-1].strip()
            for line in (berth.logs / "worker.log").read_text(errors="replace").splitlines()
            if "routed and old endpoints drained" in line or " went live" in line
        ]
        from django.db import connections

        connections.close_all()
        database(DB_NAME, "drop")
        redis.Redis.from_url(REDIS_URL).flushdb()

    def median(values) -> float:
        return statistics.median(v for v in values if v is not None)

    summary = {}
    for kind, samples in (("cold", cold), ("warm", warm)):
        raw_median = median(raw[f"{kind}_s"])
        total = median(s["push_to_live_s"] for s in samples)
        summary[kind] = {
            "push_to_live_median_s": total,
            "git_push_median_s": median(s["git_push_s"] for s in samples),
            "builder_median_s": median(s["builder_s"] for s in samples),
            "rollout_ready_median_s": median(s["rollout_ready_s"] for s in samples),
            "raw_docker_build_median_s": raw_median,
            "berth_overhead_s": total - raw_median,
        }
    rows = [
        [
            kind,
            s["push_to_live_median_s"],
            s["raw_docker_build_median_s"],
            s["berth_overhead_s"],
            s["builder_median_s"],
            s["rollout_ready_median_s"],
            s["git_push_median_s"],
        ]
        for kind, s in summary.items()
    ]
    print()
    print_table(
        f"push → live, python sample (Flask from PyPI), median of {runs} — {machine()}",
        [
            "",
            "push→live s",
            "raw docker build s",
            "Berth overhead s",
            "builder s",
            "roll-out ready s",
            "push exits s",
        ],
        rows,
    )
    for kind, samples in (("cold", cold), ("warm", warm)):
        phases = {name: median(s["phases_s"].get(name) for s in samples) for name in PHASES}
        phases["router serves it"] = summary[kind]["push_to_live_median_s"]
        phases["push exits"] = median(s["git_push_s"] for s in samples)
        summary[kind]["phases_median_s"] = phases
        print(f"{kind}: " + ", ".join(f"{name} {value:.2f}" for name, value in phases.items()))
    print("deployer's cut-over split (warm pushes are the last ones):")
    for line in cutovers[-2 * runs :]:
        print(f"  {line}")
    print(f"target: warm overhead ≤ 5 s → {'met' if summary['warm']['berth_overhead_s'] <= 5 else 'NOT met'}")
    figures = []
    for kind, samples in (("cold", cold), ("warm", warm)):
        what = "first push of a new app, Flask from PyPI" if kind == "cold" else "code-only change"
        figures += [
            figure(f"git push → live, {kind} ({what})", [s["push_to_live_s"] for s in samples], "s"),
            figure(f"  raw docker build of the same, {kind}", raw[f"{kind}_s"], "s"),
            figure(
                f"  Berth overhead, {kind} (push→live − median raw build)",
                [s["push_to_live_s"] - statistics.median(raw[f"{kind}_s"]) for s in samples],
                "s",
                goal="≤ 5 s" if kind == "warm" else "",
                limit=5 if kind == "warm" else None,
            ),
            figure(f"  git push returns, {kind}", [s["git_push_s"] for s in samples], "s"),
            figure(
                f"  git push returns after the router serves it, {kind}",
                [s["git_push_s"] - s["push_to_live_s"] for s in samples],
                "s",
                goal="≤ 1 s" if kind == "warm" else "",
                limit=1 if kind == "warm" else None,
            ),
        ]
    save_figures("push_to_live", figures)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "push_to_live.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "runs": runs,
                "summary": summary,
                "cold": cold,
                "warm": warm,
                "raw": raw,
                "deployer_cutovers": cutovers,
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

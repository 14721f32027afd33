"""Benchmark: the buildpacks on realistic apps (tests/fixtures/apps/), pushed to a whole Berth and through Berth's
builder on this engine.

    .venv/bin/python bench/buildpacks.py [--warm-runs 2] [--apps py-uv-fastapi,node-pnpm,...] [--push-apps …|none]

First, `git push` → live per buildpack (python, node, go, static, dockerfile, node then static): a whole Berth of
the benchmark's own (bench_platform: HAProxy, web, worker, watcher; database berth_bench_buildpacks, Redis
BENCH_REDIS_URL, dropped/flushed at the end), one new app per buildpack; "cold" its first push (dependency files
marked as below), "warm" a code-only change. A push returns once its release is live (`-----> Released vN`); the
router is then asked once for the app's page. Beside it, the lines the pusher read against the build's full log.
Then, through the builder alone:

Per app: "cold" is its first build under a fresh cache tag, its dependency files marked so that no layer of an
earlier run is reused (the stack images present, as on a real server), "warm" a code-only change (the median of --warm-runs). Then the
one-dependency change (--one-more) of py-uv-fastapi and node-pnpm (tests/buildpacks/data/) and of two APIs with a
production app's dependencies, py-uv-api and node-pnpm-api (bench/apps/), with the app's dependency cache and without
it (the cache cleared first, as `berth builds:cache:clear` does), beside the same app's cold build, --one-more-runs
times; and the build output lines the pusher reads against those of the full log. Measures builds, not push → live (bench/push_to_live.py has the rest of
the pipeline). Images are tagged berth-bench/… and removed at the end. Prints tables and writes
bench/results/buildpacks.figures.json.
"""

import argparse
import atexit
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "fixtures" / "apps"
DATA = REPO / "tests" / "buildpacks" / "data"
BENCH_APPS = REPO / "bench" / "apps"
# app → (its folder, its files with one dependency more, which files, what was added): the corpus's two smallest
# apps, and an API of each kind with the dependencies a production app has (bench/apps/README.md)
ONE_MORE = {
    "py-uv-fastapi": (APPS, DATA / "uv-one-more", ("pyproject.toml", "uv.lock"), "httpx"),
    "node-pnpm": (APPS, DATA / "pnpm-one-more", ("package.json", "pnpm-lock.yaml"), "kleur"),
    "py-uv-api": (BENCH_APPS, BENCH_APPS / "py-uv-api-one-more", ("pyproject.toml", "uv.lock"), "httpx"),
    "node-pnpm-api": (
        BENCH_APPS,
        BENCH_APPS / "node-pnpm-api-one-more",
        ("package.json", "pnpm-lock.yaml"),
        "kleur",
    ),
}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT_S = 600
# buildpack → the fixture pushed and a text its answer holds once live
PUSH_APPS = {
    "python": ("py-uv-fastapi", '"app":"uv-fastapi"'),
    "node": ("node-pnpm", "node-pnpm on node"),
    "go": ("go", "hello from go"),
    "static": ("static", "<"),
    "dockerfile": ("dockerfile", "hello from a Dockerfile"),
    "node+static": ("node-vite-spa", 'src="/assets/index-'),
}
PUSH_DB = "berth_bench_buildpacks"
PUSH_APP_PREFIX = "bench-bp-"
DEFAULT_APPS = (
    "py-uv-fastapi,py-poetry-django,py-pipenv-flask,py-requirements-313,node-pnpm,node-yarn4,go,static"
)

sys.path[:0] = [str(REPO), str(REPO / "platform"), str(REPO / "bench")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)
# the platform the push section stands up: a database and router folder of its own, the Redis db it is given
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:54329/{PUSH_DB}"
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("BERTH_ROUTER_DIR", str(Path(os.environ["BERTH_HOME"]) / "router"))

from bench_platform import Platform, database, remove_apps  # noqa: E402
from common import figure, print_table, save_figures  # noqa: E402

RUN = secrets.token_hex(3)
TAGS: list[str] = []


class Build:
    def __init__(self, source: Path, name: str):
        self.source = source
        self.tag = f"berth-bench/bp-{RUN}-{name}:latest"
        self.cache_ref = f"berth/bench-{RUN}-{name}:build-cache"
        self.run_ref = f"berth/bench-{RUN}-{name}:build-run"
        TAGS.extend([self.tag, self.cache_ref, self.run_ref])

    def __call__(self) -> tuple[float, list[str], list[str]]:
        from berth.builds.builder import docker_build
        from berth.builds.buildpacks import detect

        shown, detail = [], []
        started = time.monotonic()
        docker_build(
            source_dir=self.source,
            tag=self.tag,
            buildpack=detect(self.source),
            on_line=shown.append,
            on_detail=detail.append,
            ca_bundle=CA_BUNDLE if CA_BUNDLE.is_file() else None,
            timeout=BUILD_TIMEOUT_S,
            labels={"org.berth.bench": "1"},
            cache_ref=self.cache_ref,
            run_ref=self.run_ref,
        )
        return time.monotonic() - started, shown, detail


def _first_push(source: Path) -> None:
    """Make the dependency files unlike any this engine built before (a comment, a description), so the "cold"
    build installs its dependencies as a new app's first push does, not from layers an earlier run left."""
    mark = f"bench {RUN} {secrets.token_hex(4)}"
    for name, comment in (
        ("requirements.txt", "#"),
        ("pyproject.toml", "#"),
        ("go.mod", "//"),
        ("Pipfile", "#"),
    ):
        path = source / name
        if path.is_file():
            path.write_text(path.read_text() + f"\n{comment} {mark}\n")
    package = source / "package.json"
    if package.is_file():
        data = json.loads(package.read_text())
        data["description"] = mark
        package.write_text(json.dumps(data, indent=2) + "\n")


def _downloaded(shown: list[str]) -> str:
    """How many packages the install fetched, as the tool says it: uv "Prepared N packages", pnpm "downloaded N"."""
    for line in reversed(shown):  # pnpm's progress lines count up: its last one says the total
        words = line.replace(",", " ").split()
        if words[:1] == ["Prepared"] and len(words) > 1:
            return words[1]
        if "downloaded" in words and words.index("downloaded") + 1 < len(words):
            return words[words.index("downloaded") + 1]
    return "?"


def _edit_code(source: Path, run: int) -> None:
    marker = source / "bench-edit.txt"
    marker.write_text(f"{run} {secrets.token_hex(8)}\n")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)


def _push(repo: Path, message: str) -> tuple[float, str]:
    """Commit the work tree and push it; the seconds `git push` took (its release is live when it returns) and
    what the pusher read. A push the platform refuses is pushed once more (the machine is shared: another suite's
    cleanup has removed a bench service under a deploy), and the failure is printed, never hidden."""
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    for attempt in (1, 2):
        started = time.monotonic()
        push = _git(repo, "push", "berth", "main")
        seconds = time.monotonic() - started
        if push.returncode == 0 and "-----> Released v" in push.stderr:
            return seconds, push.stderr
        errors = [line for line in push.stderr.splitlines() if line.startswith("remote: error:")]
        print(
            f"push of {repo.name} failed (attempt {attempt}): {errors[:1] or push.stderr[-300:]}", flush=True
        )
    raise RuntimeError(f"push of {repo.name} failed twice:\n{push.stderr[-3000:]}")


def push_to_live(work: Path, buildpacks: list[str]) -> tuple[list[list], list[dict]]:
    """Per buildpack: a new app's first push and a code-only push, each until live; the lines shown vs logged."""
    import httpx
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    database(PUSH_DB, "create")
    berth = Platform(work / "platform")
    rows, figures, names = [], [], []
    try:
        berth.start()
        from berth.accounts.services import team_create, token_create
        from berth.apps.services import app_create
        from berth.builds.models import Build as BuildRow
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="bench", email="bench@example.test")
        team = team_create(name="bench", actor=user)
        _, token = token_create(user=user, name="bench")
        for buildpack in buildpacks:
            fixture, expected = PUSH_APPS[buildpack]
            name = f"{PUSH_APP_PREFIX}{secrets.token_hex(3)}"
            names.append(name)
            app = app_create(team=team, name=name, actor=user)
            repo = work / "push" / fixture
            shutil.copytree(APPS / fixture, repo)
            _first_push(repo)
            remote = berth.web_url.replace("http://", f"http://b:{token}@") + f"/git/{name}.git"
            for args in (
                ["init", "-q", "-b", "main"],
                ["config", "user.email", "bench@example.test"],
                ["config", "user.name", "bench"],
                ["remote", "add", "berth", remote],
            ):
                _git(repo, *args)
            cold, shown = _push(repo, "first push")
            answer = httpx.get(
                f"http://127.0.0.1:{berth.router_port}/", headers={"Host": f"{name}.localhost"}, timeout=10
            )
            if answer.status_code != 200 or expected not in answer.text:
                raise RuntimeError(f"{name} ({fixture}) answers {answer.status_code}: {answer.text[:200]}")
            log_lines = len(BuildRow.objects.filter(app=app).order_by("-pk").first().log.splitlines())
            shown_lines = sum(1 for line in shown.splitlines() if line.startswith("remote:"))
            _edit_code(repo, 0)
            warm, _ = _push(repo, "code-only change")
            print(f"{buildpack} ({fixture}): cold {cold:.1f}s, warm {warm:.1f}s", flush=True)
            rows.append([buildpack, fixture, round(cold, 1), round(warm, 1), shown_lines, log_lines])
            figures.append(figure(f"git push → live, {buildpack} ({fixture}): cold", [cold], "s"))
            figures.append(figure(f"git push → live, {buildpack} ({fixture}): warm", [warm], "s"))
    finally:
        berth.stop()
        remove_apps(names)
        from django.db import connections

        connections.close_all()
        database(PUSH_DB, "drop")
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    return rows, figures


def _cleanup() -> None:
    from berth.runtime.build import image_untag

    for tag in TAGS:
        try:
            image_untag(tag)
        except Exception as exc:  # a bench must not hide its figures behind a cleanup failure
            print(f"could not remove {tag}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument("--apps", default=DEFAULT_APPS)
    parser.add_argument("--push-apps", default=",".join(PUSH_APPS), help="buildpacks pushed to live, or none")
    parser.add_argument(
        "--one-more", default=",".join(ONE_MORE), help="apps given one dependency more, or ''"
    )
    parser.add_argument("--one-more-runs", type=int, default=2)
    args = parser.parse_args()
    import django

    django.setup()
    from berth.runtime.build import image_untag

    atexit.register(_cleanup)
    work = Path(tempfile.mkdtemp(prefix="berth-bench-bp-"))
    atexit.register(shutil.rmtree, work, True)
    figures = []
    if args.push_apps != "none":
        push_rows, figures = push_to_live(work, args.push_apps.split(","))
        print_table(
            "git push → live per buildpack (s): a new app's first push (cold), a code-only change (warm); the "
            "lines of the cold push shown to the pusher / in the build's full log",
            ["buildpack", "app", "cold", "warm", "lines shown", "lines in full log"],
            push_rows,
        )
    rows = []
    for name in [app for app in args.apps.split(",") if app]:
        source = work / name
        shutil.copytree(APPS / name, source)
        _first_push(source)
        build = Build(source, name)
        cold, shown, detail = build()
        warm = []
        for run in range(args.warm_runs):
            _edit_code(source, run)
            warm.append(build()[0])
        rows.append(
            [name, round(cold, 1), round(statistics.median(warm), 1), len(shown), len(shown) + len(detail)]
        )
        figures.append(figure(f"{name}: cold build", [cold], "s"))
        figures.append(figure(f"{name}: warm build (code-only change)", warm, "s"))
    print_table(
        "Buildpacks: build times (s) and the lines of a cold build shown to the pusher / in the full log",
        ["app", "cold", "warm", "lines shown", "lines in full log"],
        rows,
    )

    # one dependency added, with the app's cache and after clearing it (as `berth builds:cache:clear` does); the
    # app's cold build (its first, under a fresh cache tag) measured in the same runs, so the three are alike
    for app in [app for app in args.one_more.split(",") if app]:
        folder, data, files, added = ONE_MORE[app]
        colds: list[float] = []
        results: dict[str, list[tuple[float, str]]] = {"with the cache": [], "without the cache": []}
        for run in range(args.one_more_runs):
            for label, clear in (("with the cache", False), ("without the cache", True)):
                source = work / f"one-more-{app}-{label.split()[0]}-{run}"
                shutil.copytree(folder / app, source)
                _first_push(source)
                build = Build(source, f"one-more-{app}-{'cold' if clear else 'cached'}-{run}")
                colds.append(build()[0])
                for file in files:
                    shutil.copy(data / file, source / file)
                _first_push(source)  # no earlier run's install layer either
                if clear:
                    image_untag(build.cache_ref)
                    image_untag(build.run_ref)
                seconds, shown, _ = build()
                results[label].append((seconds, _downloaded(shown)))
        cold = statistics.median(colds)
        figures.append(figure(f"{app}: cold build (beside the one-dependency change)", colds, "s"))
        rows = []
        for label, runs in results.items():
            seconds = [run[0] for run in runs]
            figures.append(figure(f"{app}: one dependency added, {label}", seconds, "s"))
            median = statistics.median(seconds)
            rows.append(
                [
                    label,
                    round(median, 1),
                    f"{min(seconds):.1f}–{max(seconds):.1f}",
                    runs[-1][1],
                    f"{median / cold:.0%}",
                ]
            )
        print_table(
            f"One dependency added ({app}: {added}), {args.one_more_runs} run(s), medians; the app's cold build "
            f"{cold:.1f}s ({min(colds):.1f}–{max(colds):.1f})",
            ["", "build (s)", "spread", "packages downloaded", "of the cold build"],
            rows,
        )
        cached = statistics.median(seconds for seconds, _ in results["with the cache"])
        print(
            f"{app}: with the cache under half the cold build → {'met' if cached < cold / 2 else 'NOT met'}"
        )
    save_figures("buildpacks", figures)


if __name__ == "__main__":
    main()

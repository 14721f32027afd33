"""Benchmark: the buildpacks on realistic apps (tests/fixtures/apps/), through Berth's builder on this engine.

    .venv/bin/python bench/buildpacks.py [--warm-runs 2] [--apps py-uv-fastapi,node-pnpm,...]

Per app: "cold" is its first build under a fresh cache tag, its dependency files marked so that no layer of an
earlier run is reused (the stack images present, as on a real server), "warm" a code-only change (the median of --warm-runs). Then the
one-dependency change of py-uv-fastapi (httpx added, tests/buildpacks/data/uv-one-more) with the app's dependency
cache and without it (the cache cleared first, as `berth builds:cache:clear` does), and the build output lines the
pusher reads against those of the full log. Measures builds, not push → live (bench/push_to_live.py has the rest of
the pipeline). Images are tagged berth-bench/… and removed at the end. Prints a table and writes
bench/results/buildpacks.figures.json.
"""

import argparse
import atexit
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "fixtures" / "apps"
ONE_MORE = REPO / "tests" / "buildpacks" / "data" / "uv-one-more"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT_S = 600
DEFAULT_APPS = (
    "py-uv-fastapi,py-poetry-django,py-pipenv-flask,py-requirements-313,node-pnpm,node-yarn4,go,static"
)

sys.path[:0] = [str(REPO / "platform"), str(REPO / "bench")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)

from common import figure, print_table, save_figures  # noqa: E402

RUN = secrets.token_hex(3)
TAGS: list[str] = []


class Build:
    def __init__(self, source: Path, name: str):
        self.source = source
        self.tag = f"berth-bench/bp-{RUN}-{name}:latest"
        self.cache_ref = f"berth/bench-{RUN}-{name}:build-cache"
        TAGS.extend([self.tag, self.cache_ref])

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


def _edit_code(source: Path, run: int) -> None:
    marker = source / "bench-edit.txt"
    marker.write_text(f"{run} {secrets.token_hex(8)}\n")


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
    args = parser.parse_args()
    import django

    django.setup()
    from berth.runtime.build import image_untag

    atexit.register(_cleanup)
    work = Path(tempfile.mkdtemp(prefix="berth-bench-bp-"))
    atexit.register(shutil.rmtree, work, True)
    rows, figures = [], []
    for name in args.apps.split(","):
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

    # one dependency added to the uv app, with the app's cache and after clearing it
    results = {}
    for label, clear in (("with the cache", False), ("without the cache", True)):
        source = work / f"one-more-{label.split()[0]}"
        shutil.copytree(APPS / "py-uv-fastapi", source)
        _first_push(source)
        build = Build(source, f"one-more-{'cold' if clear else 'cached'}")
        build()
        for file in ("pyproject.toml", "uv.lock"):
            shutil.copy(ONE_MORE / file, source / file)
        _first_push(source)  # no earlier run's install layer either
        if clear:
            image_untag(build.cache_ref)
        seconds, shown, _ = build()
        prepared = next((line.split()[1] for line in shown if line.strip().startswith("Prepared ")), "?")
        results[label] = (seconds, prepared)
        figures.append(figure(f"py-uv-fastapi: one dependency added, {label}", [seconds], "s"))
    print_table(
        "One dependency added (uv: httpx), after a cold build of the app",
        ["", "build (s)", "packages downloaded"],
        [[label, round(seconds, 1), prepared] for label, (seconds, prepared) in results.items()],
    )
    save_figures("buildpacks", figures)


if __name__ == "__main__":
    main()

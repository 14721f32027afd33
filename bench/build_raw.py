"""Benchmark: Berth's builder against a raw `docker build` of the same Dockerfile and context.

    .venv/bin/python bench/build_raw.py [--warm-runs 3]

The sample is tests/fixtures/apps/python (Flask from PyPI). "cold" is a build whose requirements.txt no earlier
build has seen, so pip really downloads and installs (the stack image is present); "warm" is a code-only change
(app.py edited), the median of --warm-runs. The raw builds use the context Berth packs, extracted to a folder,
and `DOCKER_BUILDKIT=0 docker build` (the engine's legacy builder, the one the SDK's API call uses). Also lists
the stack variants' sizes. Images are tagged berth-bench/… and removed at the end. Prints a table and writes
bench/results/build_raw.json.
"""

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "apps" / "python"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT_S = 600  # no single build may run longer than this
CREATED: list[list[str]] = []  # output lines of every build, to remove the layers they made

sys.path[:0] = [str(REPO / "platform"), str(REPO / "bench")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)


from common import figure, save_figures  # noqa: E402


def _unique_requirements(path: Path) -> None:
    with open(path, "a") as requirements:
        requirements.write(f"# bench {uuid.uuid4()}\n")


def _edit_code(path: Path, run: int) -> None:
    path.write_text(path.read_text() + f"# bench edit {run} {uuid.uuid4()}\n")


def berth_builds(work: Path, tag: str, warm_runs: int, cold_runs: int) -> dict:
    from berth.builds.builder import docker_build
    from berth.builds.buildpacks import detect

    def build() -> float:
        lines: list[str] = []
        result = docker_build(
            source_dir=source,
            tag=tag,
            buildpack=buildpack,
            on_line=lines.append,
            ca_bundle=CA_BUNDLE if CA_BUNDLE.is_file() else None,
            timeout=BUILD_TIMEOUT_S,
            labels={"org.berth.bench": "1"},
        )
        CREATED.append(lines)
        return result.duration

    cold = []
    for run in range(cold_runs):
        source = work / f"berth-src-{run}"
        shutil.copytree(SAMPLE, source)
        _unique_requirements(source / "requirements.txt")
        buildpack = detect(source)
        cold.append(build())
    warm = []
    for run in range(warm_runs):
        _edit_code(source / "app.py", run)
        warm.append(build())
    return {
        "cold_s": cold,
        "cold_median_s": statistics.median(cold),
        "warm_s": warm,
        "warm_median_s": statistics.median(warm),
    }


def raw_builds(work: Path, tag: str, warm_runs: int, cold_runs: int) -> dict:
    from berth.builds.builder import build_context
    from berth.builds.buildpacks import detect, render_dockerfile
    from berth.builds.stack import stack_image_ref

    def context_for(run: int) -> Path:
        source = work / f"raw-src-{run}"
        shutil.copytree(SAMPLE, source)
        _unique_requirements(source / "requirements.txt")
        buildpack = detect(source)
        dockerfile = render_dockerfile(buildpack, source, stack_image=stack_image_ref(buildpack.stack))
        context_dir = work / f"raw-context-{run}"
        context = build_context(
            source_dir=source,
            buildpack=buildpack,
            dockerfile=dockerfile,
            ca_bundle=CA_BUNDLE if CA_BUNDLE.is_file() else None,
        )
        with context, tarfile.open(fileobj=context) as tar:
            tar.extractall(context_dir, filter="tar")
        return context_dir

    def build() -> float:
        started = time.monotonic()
        done = subprocess.run(
            ["docker", "build", "--label", "org.berth.bench=1", "-t", tag, str(context_dir)],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        elapsed = time.monotonic() - started
        CREATED.append(done.stdout.splitlines())
        return elapsed

    cold = []
    for run in range(cold_runs):
        context_dir = context_for(run)
        cold.append(build())
    warm = []
    for run in range(warm_runs):
        _edit_code(context_dir / "app" / "app.py", run)
        warm.append(build())
    return {
        "cold_s": cold,
        "cold_median_s": statistics.median(cold),
        "warm_s": warm,
        "warm_median_s": statistics.median(warm),
    }


def _remove_what_was_built() -> None:
    """Every layer the benchmark's builds made, newest first; the cache earlier builds made is left alone."""
    import docker.errors
    from berth.builds.builder import layers_created
    from berth.runtime.client import docker_client

    client = docker_client()
    for lines in reversed(CREATED):
        for layer in layers_created(lines):
            try:
                client.images.remove(layer, force=True, noprune=True)
            except docker.errors.APIError:
                pass  # already gone, or a layer another image still uses


def stack_sizes() -> dict:
    from berth.builds.stack import VARIANTS
    from berth.runtime.client import docker_client

    client = docker_client()
    sizes = {}
    for name, variant in VARIANTS.items():
        try:
            sizes[name] = round(client.images.get(variant.tag).attrs["Size"] / 1e6)
        except Exception:  # not built on this machine
            sizes[name] = None
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=1)
    args = parser.parse_args()
    import django

    django.setup()
    from berth.builds.stack import stack_build

    stack_build("base", echo=lambda line: None)
    run_id = uuid.uuid4().hex[:8]
    berth_tag, raw_tag = f"berth-bench/build-berth:{run_id}", f"berth-bench/build-raw:{run_id}"
    with tempfile.TemporaryDirectory(prefix="berth-bench-build-") as tmp:
        try:
            cold_runs, warm_runs = max(1, min(args.cold_runs, 10)), max(1, min(args.warm_runs, 10))
            berth = berth_builds(Path(tmp), berth_tag, warm_runs, cold_runs)
            raw = raw_builds(Path(tmp), raw_tag, warm_runs, cold_runs)
        finally:
            _remove_what_was_built()
    sizes = stack_sizes()
    print(
        f"python sample (Flask from PyPI)     cold (median of {cold_runs})   warm (median of {warm_runs}, code-only change)"
    )
    print(
        f"  Berth builder (SDK, streamed)  {berth['cold_median_s']:7.1f} s  {berth['warm_median_s']:7.2f} s"
    )
    print(f"  raw `docker build` (legacy)    {raw['cold_median_s']:7.1f} s  {raw['warm_median_s']:7.2f} s")
    save_figures(
        "build_raw",
        [
            figure("Berth builder, cold (Flask from PyPI)", berth["cold_s"], "s"),
            figure("raw docker build, cold (same context)", raw["cold_s"], "s"),
            figure("Berth builder, warm (code-only change)", berth["warm_s"], "s"),
            figure("raw docker build, warm (same context)", raw["warm_s"], "s"),
        ],
    )
    print(
        "stack variants: " + ", ".join(f"{k} {v} MB" if v else f"{k} (not built)" for k, v in sizes.items())
    )
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "build_raw.json").write_text(
        json.dumps({"berth": berth, "raw_docker_build": raw, "stack_sizes_mb": sizes}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

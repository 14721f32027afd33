"""`make bench`: run every benchmark in bench/ on this machine and print one table of their figures.

    .venv/bin/python bench/run_all.py [--quick] [name ...]

Each benchmark is a script that starts what it needs and stops it; it saves its figures (each the median of
several runs, with min and max) to bench/results/<name>.figures.json, which this runner gathers into one table.
A script's own output goes to bench/results/<name>.log. --quick runs fewer repetitions (a smoke test, not figures
to quote). Writes bench/results/all.json: the machine, every figure with its samples, each script's wall time and
exit code, and the load average seen during the run (sampled every 15 s: the figures are only as quiet as the
machine was).
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
SKIP = {"run_all.py", "common.py", "__init__.py"}
SCRIPT_TIMEOUT_S = 20 * 60  # a hung benchmark is stopped (its process group) and reported failed
# longer for these: apps_500 sets up 500 apps (8 image deploys at a time), measures and removes them: 24 min here
SCRIPT_TIMEOUTS_S = {"apps_500": 75 * 60}

# arguments per script: chosen so `make bench` ends in about 25 minutes on 2 shared vCPUs, and apps_500's 24 more
FULL = {
    # 256 MB, not the 1 GB: filling, dumping and restoring 1 GB takes too long on this machine
    "addons": ["--runs", "3", "--mb", "256"],
    "api_apps_list": ["--rounds", "3", "--requests", "100"],
    "apps_500": ["--apps", "500"],
    "build_raw": ["--cold-runs", "3", "--warm-runs", "3"],
    "buildpacks": ["--warm-runs", "2"],
    "cert_issue": ["--pushes", "3", "--domains", "5"],
    "cert_renewal": ["--replacements", "10", "--threads", "2", "--interval", "1.5"],
    "cluster_failover": ["--runs", "2"],
    "concurrent_pushes": ["--rounds", "3"],
    "deploy_under_load": ["--deploys", "10"],
    "deploy_unhealthy": ["--kills", "5"],
    "idle_footprint": ["--apps", "4", "--idle", "90"],
    "log_latency": ["--repeats", "3", "--seconds", "20"],
    "log_drains": ["--down", "60"],
    "process_ready": ["--rounds", "3"],
    "push_to_live": ["--runs", "5"],
    "router_overhead": ["--repeats", "3", "--duration", "3", "--deaths", "5"],
    "router_growth": ["--runs", "3"],
    "upgrade_under_load": [],
}
QUICK = {
    "addons": ["--runs", "1", "--mb", "16"],
    "api_apps_list": ["--rounds", "2", "--requests", "30"],
    "apps_500": ["--apps", "20", "--quick"],
    "build_raw": ["--cold-runs", "1", "--warm-runs", "2"],
    "buildpacks": ["--warm-runs", "1", "--apps", "py-uv-fastapi,node-pnpm,go"],
    "cert_issue": ["--pushes", "1", "--domains", "2"],
    "cert_renewal": ["--replacements", "3", "--threads", "2", "--interval", "0.5"],
    "cluster_failover": ["--runs", "1"],
    "concurrent_pushes": ["--rounds", "1", "--apps", "4"],
    "deploy_under_load": ["--deploys", "3"],
    "deploy_unhealthy": ["--kills", "2"],
    "idle_footprint": ["--apps", "2", "--idle", "20"],
    "log_latency": ["--repeats", "2", "--seconds", "6", "--clients", "10"],
    "log_drains": ["--down", "10", "--small-cap", "100"],
    "process_ready": ["--rounds", "1"],
    "push_to_live": ["--runs", "2"],
    "router_overhead": ["--repeats", "2", "--duration", "1", "--deaths", "2"],
    "router_growth": ["--runs", "1", "--threads", "2"],
    "upgrade_under_load": ["--slow-build", "20"],
}


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
    versions = []
    for name, command in (
        ("Docker", ["docker", "version", "-f", "{{.Server.Version}}"]),
        ("HAProxy", ["haproxy", "-v"]),
    ):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = out[0] if name == "Docker" else (out[2] if len(out) > 2 else "")
        if version:
            versions.append(f"{name} {version}")
    return (
        f"{os.cpu_count()} × {cpu}, {mem_kb / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}, "
        + ", ".join(versions)
    )


class LoadSampler:
    """The 1-minute load average every 15 s while the benchmarks run."""

    def __init__(self):
        self.samples: list[float] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append(os.getloadavg()[0])
            self.stopped.wait(15)

    def __enter__(self) -> "LoadSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def docker_engine_pid() -> str:
    """The engine's PID: when it changes across a benchmark, something on this machine restarted the engine."""
    try:
        return Path("/var/run/docker.pid").read_text().strip()
    except OSError:
        return ""


def run_script(script: Path, args: list[str]) -> tuple[int, float]:
    """Run one benchmark in a process group of its own, output to results/<name>.log; (exit code, seconds)."""
    started = time.monotonic()
    timeout = SCRIPT_TIMEOUTS_S.get(script.stem, SCRIPT_TIMEOUT_S)
    with open(RESULTS / f"{script.stem}.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=BENCH_DIR.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # the script's own clean-up gets a chance first (SIGTERM), then the group it leads is killed
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.write(f"\nstopped after {timeout} s\n")
            code = -1
    return code, time.monotonic() - started


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("requests", "lines") or (float(value).is_integer() and abs(value) >= 100):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(figures: list[dict]) -> str:
    headers = ["benchmark", "figure", "median", "min–max", "unit", "runs", "goal / note"]
    rows = []
    for f in figures:
        spread = "" if f["runs"] <= 1 else f"{number(f['min'], f['unit'])}–{number(f['max'], f['unit'])}"
        goal = (
            f.get("goal") and f"goal {f['goal']}" + {True: " met", False: " MISSED", None: ""}[f.get("met")]
        )
        note = "; ".join(part for part in (goal, f.get("note")) if part)
        rows.append(
            [f["bench"], f["name"], number(f["median"], f["unit"]), spread, f["unit"], str(f["runs"]), note]
        )
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    right = {2, 3, 5}

    def line(row) -> str:
        return "  ".join(
            str(cell).rjust(width) if i in right else str(cell).ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions: a smoke test of every benchmark"
    )
    parser.add_argument("only", nargs="*", help="benchmark names (default: all)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(
        p for p in BENCH_DIR.glob("*.py") if p.name not in SKIP and (not args.only or p.stem in args.only)
    )
    started = time.monotonic()
    began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    summary = {"machine": machine(), "started": began, "quick": args.quick, "benchmarks": [], "figures": []}
    print(f"machine: {summary['machine']}\nstarted {began}{' (--quick)' if args.quick else ''}", flush=True)
    failed = []
    with LoadSampler() as load:
        for script in scripts:
            (RESULTS / f"{script.stem}.figures.json").unlink(
                missing_ok=True
            )  # a stale file must not pass as new
            script_args = list(plan.get(script.stem, []))
            database_url = os.environ.get("DATABASE_URL", "")
            if script.stem == "api_apps_list" and database_url.startswith("postgres"):
                script_args += ["--database-url", database_url]  # the one deploy/bench.sh made for it
            print(f"  {script.stem} {' '.join(script_args)} …", end=" ", flush=True)
            engine = docker_engine_pid()
            code, elapsed = run_script(script, script_args)
            engine_restarted = docker_engine_pid() != engine
            figures_file = RESULTS / f"{script.stem}.figures.json"
            figures = json.loads(figures_file.read_text()) if figures_file.exists() else []
            print(f"{'ok' if code == 0 else f'FAILED (exit {code})'} in {elapsed:.0f} s, load {os.getloadavg()[0]:.1f}",
                  flush=True)  # fmt: skip
            if engine_restarted:
                print(
                    "    (the Docker engine was restarted meanwhile, by something else on this machine)",
                    flush=True,
                )
            if code != 0:
                failed.append(script.stem)
                tail = (RESULTS / f"{script.stem}.log").read_text(errors="replace")[-1500:]
                print("    " + tail.replace("\n", "\n    "), flush=True)
            for figure in figures:
                summary["figures"].append({"bench": script.stem, **figure})
            summary["benchmarks"].append(
                {
                    "name": script.stem,
                    "args": script_args,
                    "seconds": round(elapsed, 1),
                    "exit": code,
                    "docker_engine_restarted": engine_restarted,
                }
            )
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    summary["load_average_1min"] = {
        "min": min(load.samples),
        "median": statistics.median(load.samples),
        "max": max(load.samples),
        "samples": load.samples,
    }
    (RESULTS / "all.json").write_text(json.dumps(summary, indent=2) + "\n")
    la = summary["load_average_1min"]
    print(
        f"\nBerth benchmarks — {summary['machine']}\n"
        f"each figure: median of `runs` runs, min–max their spread; load average during the run "
        f"{la['min']:.1f}–{la['max']:.1f} (median {la['median']:.1f}) on {os.cpu_count()} CPUs\n"
    )
    print(render(summary["figures"]))
    print(
        f"\nmake bench took {summary['total_seconds'] / 60:.1f} min"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + f"; details in {RESULTS}/<name>.log, all figures and samples in {RESULTS / 'all.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench`: run every benchmark in bench/ on this machine, print their tables, write bench/results/all.json.

Each benchmark is a script that prints its own table (and may write bench/results/<name>.json); this runner adds the
machine, the wall time of each and of the whole run.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
SKIP = {"run_all.py", "common.py", "__init__.py"}


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
    return f"{os.cpu_count()} × {cpu}, {mem_kb / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}"


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    only = set(argv)
    scripts = sorted(p for p in BENCH_DIR.glob("*.py") if p.name not in SKIP and (not only or p.stem in only))
    started = time.monotonic()
    summary = {"machine": machine(), "benchmarks": []}
    print(f"machine: {summary['machine']}\n")
    failed = 0
    for script in scripts:
        print(f"=== {script.stem} ===", flush=True)
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script)], cwd=BENCH_DIR.parent, text=True, capture_output=True
        )
        elapsed = time.monotonic() - t0
        print(result.stdout.rstrip())
        if result.returncode != 0:
            failed += 1
            print(f"FAILED (exit {result.returncode}):\n{result.stderr[-2000:]}")
        print(f"({elapsed:.0f} s)\n", flush=True)
        summary["benchmarks"].append(
            {
                "name": script.stem,
                "seconds": round(elapsed, 1),
                "exit": result.returncode,
                "output": result.stdout,
            }
        )
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    (RESULTS / "all.json").write_text(json.dumps(summary, indent=2))
    print(f"make bench took {summary['total_seconds']:.0f} s; results in {RESULTS / 'all.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Benchmark: losing and draining nodes of a real 3-node swarm under keep-alive load (tests/cluster).

    .venv/bin/python bench/cluster_failover.py [--runs 3] [--heartbeat 5] [--database-url URL]

Each run builds the namespace cluster (tests/cluster/harness.py), runs tests/cluster/test_failover.py (a drain
under load, then a worker killed under load: cable pulled, dockerd, containerd, shims and containers SIGKILLed)
and collects the figures it writes to /var/tmp/berth-cluster-figures.jsonl; then prints min/median/max of each.
--heartbeat sets Swarm's dispatcher heartbeat period in seconds (Docker's default is 5). Needs root; the
PostgreSQL database named by --database-url gets a test_ prefix, as pytest-django does.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import figure, save_figures  # noqa: E402

FIGURES = Path("/var/tmp/berth-cluster-figures.jsonl")
RUN_TIMEOUT_S = 900
LOCK = Path("/var/tmp/berth-cluster.lock")  # tests/cluster/harness.py's: one namespace cluster at a time
LOCK_WAIT_S = 600
KEYS = {
    "drain": ["moved_s", "failed", "total", "slowest_s"],
    "kill-worker": [
        "router_marked_down_s",
        "swarm_node_down_s",
        "all_replicas_serving_elsewhere_s",
        "failed_before_mark",
        "failed_after_mark",
        "total",
        "slowest_s",
        "rejoin_s",
    ],
}


def wait_for_the_cluster_lock() -> float:
    """Seconds waited until no other test cluster runs (the harness refuses to start beside one). The lock is
    released again at once: the harness takes it itself."""
    started = time.monotonic()
    with open(LOCK, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() - started > LOCK_WAIT_S:
                    raise RuntimeError(f"another test cluster held {LOCK} for {LOCK_WAIT_S} s") from None
                time.sleep(2)
                continue
            fcntl.flock(handle, fcntl.LOCK_UN)
            return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=0, help="seconds; 0 keeps Docker's default (5)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:54329/berth_bench_cluster")
    args = parser.parse_args()
    env = {
        **os.environ,
        "BERTH_HOME": "/var/tmp/berth-bench-cluster/home",
        "BERTH_SECRET_KEY": "bench",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        "DATABASE_URL": args.database_url,
        "BERTH_CLUSTER_HEARTBEAT": str(args.heartbeat or ""),
    }
    started = time.time()
    results: dict[str, list[dict]] = {name: [] for name in KEYS}
    failures = 0
    for run in range(1, args.runs + 1):
        waited = wait_for_the_cluster_lock()
        if waited > 1:
            print(f"run {run}: waited {waited:.0f}s for another test cluster to finish", flush=True)
        mark = FIGURES.stat().st_size if FIGURES.exists() else 0
        began = time.monotonic()
        done = subprocess.run(
            [
                str(REPO / ".venv/bin/pytest"),
                "tests/cluster/test_failover.py",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        print(f"run {run}: exit {done.returncode} in {time.monotonic() - began:.0f}s", flush=True)
        failures += done.returncode != 0
        if done.returncode != 0:
            log = REPO / "bench" / "results" / f"cluster_failover-run{run}.log"
            log.write_text(done.stdout + done.stderr)
            print(done.stdout[-3000:], file=sys.stderr)
            print(f"(whole output in {log})", file=sys.stderr)
        with open(FIGURES) as handle:
            handle.seek(mark)
            for line in handle:
                record = json.loads(line)
                results.setdefault(record["test"], []).append(record)
    print(
        f"\n{args.runs} runs, heartbeat {args.heartbeat or 'default (5)'} s, {time.time() - started:.0f}s in all"
    )
    for name, keys in KEYS.items():
        rows = results.get(name) or []
        print(f"\n{name} ({len(rows)} runs)")
        for key in keys:
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                print(
                    f"  {key:34} min {min(values):>8}  median {statistics.median(values):>8}  max {max(values):>8}"
                )

    def samples(test: str, key: str) -> list:
        return [r[key] for r in results.get(test) or [] if r.get(key) is not None]

    save_figures(
        "cluster_failover",
        [
            figure("3-node swarm: drain a node under load → tasks moved", samples("drain", "moved_s"), "s"),
            figure(
                "  failed requests during the drain",
                samples("drain", "failed"),
                "requests",
                goal="0",
                limit=0,
            ),
            figure(
                "3-node swarm: worker node killed → router marks it down",
                samples("kill-worker", "router_marked_down_s"),
                "s",
            ),
            figure(
                "  failed requests before the mark (in flight to the dead node)",
                samples("kill-worker", "failed_before_mark"),
                "requests",
            ),
            figure(
                "  failed requests after the mark",
                samples("kill-worker", "failed_after_mark"),
                "requests",
                goal="0",
                limit=0,
            ),
            figure(
                "  killed → all replicas serving elsewhere",
                samples("kill-worker", "all_replicas_serving_elsewhere_s"),
                "s",
            ),
        ],
    )
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

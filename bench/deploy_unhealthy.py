"""Benchmark: how long a dead task stays in rotation. An app runs 2 web tasks behind the router; one task's
container is killed (`docker kill`, SIGKILL) and the time until the router no longer sends it traffic is measured,
then until Swarm's replacement task is back in rotation. Repeated --kills times under keep-alive load (wrk).

    .venv/bin/python bench/deploy_unhealthy.py [--kills 5]

"Out of rotation" is the first moment HAProxy's state (admin socket) shows the killed endpoint not UP, or gone:
HAProxy's own L4 checks (two failures 500 ms apart) or the watcher's reconcile on Docker's `die` event, whichever
comes first. Goal: at most 3 s. Failed requests are wrk's socket errors plus non-2xx answers (HAProxy retries a
refused connection on the other task, so a kill should cost none). Starts the platform as the e2e tests do.
Prints a table and writes bench/results/deploy_unhealthy.json.
"""

import argparse
import json
import time
from pathlib import Path

from common import figure, percentile, print_table, save_figures
from deploy_platform import Platform, wait_seconds
from deploy_under_load import start_wrk, stop_wrk

RESULTS = Path(__file__).resolve().parent / "results"


def endpoints(app: str) -> dict[tuple[str, int], str]:
    from berth.routing.haproxy_router import HaproxyRouter

    return {(a, p): status for a, p, status in HaproxyRouter().state().get(app, {}).get("endpoints", [])}


def restart_router(platform: Platform) -> float:
    """Kill HAProxy, start it again with the same configuration (every server slot empty), and time how long
    until the app answers through it: the watcher's periodic reconcile puts the routes back."""
    import httpx
    from berth.routing.haproxy import RouterPaths, haproxy_command
    from django.conf import settings

    old = platform.processes["router"]
    old.kill()
    old.wait(timeout=10)
    started = time.monotonic()
    platform._start("router", haproxy_command(RouterPaths(settings.BERTH_ROUTER_DIR)))

    def answers() -> bool:
        try:
            url = f"http://127.0.0.1:{platform.http_port}/"
            return httpx.get(url, headers={"Host": platform.host}, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_seconds(answers, timeout=30, interval=0.05)
    return round(time.monotonic() - started, 3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    from berth.runtime.client import docker_client

    client = docker_client()
    samples = []
    with Platform() as platform:
        name = platform.app.name
        if platform.push("v1").returncode != 0:
            raise SystemExit("the first deploy failed")
        with platform.api() as api:
            api.patch(f"/apps/{name}/formation", json=[{"process": "web", "replicas": 2}]).raise_for_status()
        wait_seconds(lambda: sum(s == "UP" for s in endpoints(name).values()) == 2, timeout=60, interval=0.1)
        from berth.runtime.scheduler import get_scheduler

        wrk = start_wrk(platform, 8)
        try:
            for _ in range(args.kills):
                time.sleep(2)
                task = next(t for t in get_scheduler().tasks(app=name, process="web") if t.running)
                victim = (task.node_address, task.published_port)
                client.api.kill(task.container_id)
                out = wait_seconds(lambda v=victim: endpoints(name).get(v, "gone") != "UP", timeout=30)
                back = wait_seconds(
                    lambda: sum(s == "UP" for s in endpoints(name).values()) == 2, timeout=60, interval=0.1
                )
                samples.append({"out_of_rotation_s": round(out, 3), "replacement_in_s": round(out + back, 3)})
        finally:
            load = stop_wrk(wrk)
        router_back = [restart_router(platform) for _ in range(3)]
    outs = [s["out_of_rotation_s"] for s in samples]
    ins = [s["replacement_in_s"] for s in samples]
    print_table(
        f"a web task killed {len(samples)} times (2 web tasks, wrk with 8 keep-alive connections)",
        ["", "median s", "max s"],
        [
            ["killed -> out of rotation", percentile(outs, 0.5), max(outs)],
            ["killed -> replacement in rotation", percentile(ins, 0.5), max(ins)],
        ],
    )
    print_table("requests meanwhile", ["failed", "total"], [[load["failed"], load["total"]]])
    print_table(
        "HAProxy killed (SIGKILL) and started again from nothing: until the app answers through it again",
        ["runs", "median s", "max s"],
        [[len(router_back), percentile(router_back, 0.5), max(router_back)]],
    )
    save_figures(
        "deploy_unhealthy",
        [
            figure(
                "web task killed → out of rotation (2 tasks, wrk 8 conn.)", outs, "s", goal="≤ 3 s", limit=3
            ),
            figure("  killed → Swarm's replacement in rotation", ins, "s"),
            figure(
                "  failed requests during the kills",
                [load["failed"]],
                "requests",
                goal="0",
                limit=0,
                note=f"of {load['total']:,}; one run, a count",
            ),
            figure("HAProxy killed, started empty → app answers again", router_back, "s"),
        ],
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy_unhealthy.json").write_text(
        json.dumps({"samples": samples, "load": load, "router_restart_s": router_back}, indent=2)
    )
    return 0  # a missed goal shows in the table


if __name__ == "__main__":
    raise SystemExit(main())

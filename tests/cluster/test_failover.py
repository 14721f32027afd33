"""Traffic while nodes go away, on the real 3-node swarm: Berth's router (HAProxy on the manager) follows Swarm
through Berth's watcher (discovery.watch, full reconcile every second here) and its own health checks.

The figures the issue asks for are printed (run with -s) and kept in /var/tmp/berth-cluster-figures.jsonl.
"""

import json
import threading
import time

import pytest
from berth.apps.selectors import app_hostnames
from berth.deploys.rollout import app_reconcile
from berth.nodes import services
from berth.routing.router import get_router

from tests.cluster.load import TimedLoad
from tests.conftest import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def workers_only(healthy_cluster, on_cluster):
    """Web tasks on the workers only (the manager drained, as many installs keep it).

    Why: the scheduler addresses tasks on the manager as 127.0.0.1, right for Berth's processes when they run on
    the manager; here they run in the host's namespace, not the manager's, and the reconcile's HTTP probe of a
    new endpoint would knock on the host's own loopback. Worker tasks are addressed by node address, reachable
    from both. (The fix proposed for berth.runtime.swarm: the manager's own Status.Addr instead of 127.0.0.1.)
    """
    client = healthy_cluster.manager.client
    raw = client.api.inspect_node(healthy_cluster.manager.node_id)
    client.api.update_node(raw["ID"], raw["Version"]["Index"], {**raw["Spec"], "Availability": "drain"})
    return healthy_cluster


FIGURES = "/var/tmp/berth-cluster-figures.jsonl"


def report(name: str, **figures) -> None:
    line = json.dumps({"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures})
    print(f"\nFIGURES {line}")
    with open(FIGURES, "a") as handle:
        handle.write(line + "\n")


def router_endpoints(app: str) -> list[tuple[str, int, str]]:
    return get_router().state().get(app, {}).get("endpoints", [])


def live(cluster_app, replicas: int) -> list:
    """Run `replicas` web tasks and wait until the router has every one of them up."""
    tasks = cluster_app.deploy(replicas=replicas)
    app_reconcile(cluster_app.app)

    def routed() -> bool:
        app_reconcile(cluster_app.app)  # the watcher does this too; asking here saves its period
        return sum(1 for e in router_endpoints(cluster_app.app.name) if e[2] == "UP") == replicas

    wait_for(routed, timeout=30, interval=0.3, message=f"{replicas} endpoints up in the router")
    return tasks


def serving_elsewhere(cluster_app, replicas: int, address: str) -> bool:
    """`replicas` endpoints up in the router, none of them on `address` (a dead node's endpoint stays listed,
    DOWN and given no traffic, until Swarm reports its task gone; then it is removed at once)."""
    endpoints = router_endpoints(cluster_app.app.name)
    return sum(1 for e in endpoints if e[2] == "UP" and e[0] != address) == replicas


def test_drain_under_load_moves_tasks_without_a_failed_request(
    workers_only, cluster_router, cluster_app, watcher
):
    healthy_cluster = workers_only
    live(cluster_app, 2)
    worker = healthy_cluster.workers[0]
    host = app_hostnames(cluster_app.app)[0]
    with TimedLoad(cluster_router.host, cluster_router.port, host) as load:
        wait_for(lambda: len(load.snapshot()) == 2, timeout=20, message="both workers serving")
        started = time.monotonic()
        services.node_drain(node=worker.name)
        wait_for(
            lambda: serving_elsewhere(cluster_app, 2, worker.address),
            timeout=90,
            interval=0.2,
            message="the drained node's replica serving elsewhere",
        )
        moved = time.monotonic() - started
        mark = load.snapshot()
        time.sleep(3)
        after = load.snapshot() - mark
    report(
        "drain",
        moved_s=round(moved, 1),
        failed=load.failed,
        total=load.total,
        slowest_s=round(load.slowest, 2),
        served_by=dict(load.served_by),
    )
    assert worker.name not in after
    assert sum(after.values()) > 0
    assert load.failed == 0, load.failures[:5]


def test_a_killed_worker_costs_no_request_once_the_router_marks_it_down(
    workers_only, cluster_router, cluster_app, watcher
):
    """Timeline of a worker's death under load, each step in seconds after the kill: the router's checks mark its
    endpoint DOWN, Swarm marks the node down, the replacement task runs, the router has it UP, it serves its first
    request, the dead endpoint leaves the router. The goal: serving elsewhere soon after Swarm's detection plus a
    task start (the dead endpoint's stuck request must not hold anything up), and no failed request after the mark.
    """
    healthy_cluster = workers_only
    tasks = live(cluster_app, 2)
    assert len({t.node_id for t in tasks}) == 2  # spread: two nodes
    victim_task = tasks[0]
    victim = healthy_cluster.node_by_id(victim_task.node_id)
    first_endpoints = {(t.node_address, t.published_port) for t in tasks}
    first_tasks = {t.id for t in tasks}
    host = app_hostnames(cluster_app.app)[0]
    timeline: dict[str, float] = {}  # step -> monotonic time it was first seen
    stop = threading.Event()
    node_states = services.node_states_follow()

    def seen(step: str, now: float) -> None:
        timeline.setdefault(step, now)

    def watch_steps():
        nonlocal node_states
        steps = {"router_marked_down", "swarm_node_down", "replacement_running", "replacement_routed"}
        steps |= {"dead_endpoint_removed"}
        while not stop.is_set() and not steps <= set(timeline):
            now = time.monotonic()
            endpoints = router_endpoints(cluster_app.app.name)
            if any(e[0] == victim.address and e[2] != "UP" for e in endpoints):
                seen("router_marked_down", now)
            if "router_marked_down" in timeline and not any(e[0] == victim.address for e in endpoints):
                seen("dead_endpoint_removed", now)
            if any(e[2] == "UP" and (e[0], e[1]) not in first_endpoints for e in endpoints):
                seen("replacement_routed", now)
            if "swarm_node_down" not in timeline:
                # what the watcher calls each loop: records node.down for the apps that ran there
                node_states = services.node_states_follow(previous=node_states)
                if node_states.get(victim.node_id) == "down":
                    seen("swarm_node_down", now)
            if "replacement_running" not in timeline and any(
                t.running and t.id not in first_tasks
                for t in cluster_app.scheduler.tasks(app=cluster_app.app.name)
            ):
                seen("replacement_running", now)
            time.sleep(0.05)

    with TimedLoad(cluster_router.host, cluster_router.port, host) as load:
        wait_for(lambda: victim.name in load.snapshot(), timeout=20, message="the victim serving")
        time.sleep(1)
        monitor = threading.Thread(target=watch_steps, daemon=True)
        monitor.start()
        killed = victim.kill()
        wait_for(
            lambda: serving_elsewhere(cluster_app, 2, victim.address),
            timeout=120,
            interval=0.2,
            message="both replicas serving from the surviving nodes",
        )
        recovered = time.monotonic() - killed
        wait_for(
            lambda: any(task not in first_tasks for task in dict(load.first_served)),
            timeout=20,
            interval=0.1,
            message="the replacement serving a request",
        )
        mark = load.snapshot()
        time.sleep(3)
        after = load.snapshot() - mark
        wait_for(
            lambda: not any(e[0] == victim.address for e in router_endpoints(cluster_app.app.name)),
            timeout=60,
            message="the dead node's endpoint out of the router",
        )
    stop.set()
    monitor.join(timeout=5)
    first_served = min(at for task, at in dict(load.first_served).items() if task not in first_tasks)
    down_at = timeline.get("router_marked_down", float("inf"))
    before_mark = [f for f in load.failures if f[0] < down_at]
    after_mark = [f for f in load.failures if f[0] >= down_at]
    from tests.cluster.conftest import rejoin

    rejoined = rejoin(healthy_cluster, victim)
    steps = {f"{step}_s": round(at - killed, 2) for step, at in sorted(timeline.items(), key=lambda i: i[1])}
    report(
        "kill-worker",
        **steps,
        replacement_first_served_s=round(first_served - killed, 2),
        all_replicas_serving_elsewhere_s=round(recovered, 1),
        failed_before_mark=len(before_mark),
        failed_after_mark=len(after_mark),
        failed=load.failed,
        total=load.total,
        slowest_s=round(load.slowest, 2),
        first_failures=[f[1] for f in load.failures[:3]],
        rejoin_s=round(rejoined, 1),
    )
    assert victim.name not in after and sum(after.values()) > 0
    assert "router_marked_down" in timeline, "the router never marked the dead node's endpoint down"
    assert after_mark == [], after_mark[:5]
    # nothing waits on the dead endpoint: once Swarm has the replacement running, the watcher routes it within
    # its reconcile period (1 s here) plus the replacement's HTTP check, not after the dead endpoint's stuck
    # request times out (HAProxy's 30 s server timeout)
    assert timeline["replacement_routed"] - timeline["replacement_running"] < 6, steps
    events = redis_events(cluster_app.app.name)
    assert any(e["kind"] == "node.down" and victim.name in e["message"] for e in events), events


def redis_events(app: str) -> list[dict]:
    from berth.core.redis import redis_client
    from berth.observe.services import as_text, events_key

    return [
        {as_text(k): as_text(v) for k, v in fields.items()}
        for _id, fields in redis_client().xrange(events_key(app))
    ]

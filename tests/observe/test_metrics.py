"""Health and node metrics from a real Swarm service and this node's /proc."""

import pytest
from berth.observe.metrics import NODES_KEY, Sampler, health_key, latest_snapshot, process_state
from berth.runtime.stats import cpu_percent, memory_mb

from tests.conftest import wait_for


@pytest.mark.parametrize(
    ("task_state", "health", "expected"),
    [
        ("running", None, "healthy"),
        ("running", "unhealthy", "unhealthy"),
        ("running", "starting", "starting"),
        ("preparing", None, "starting"),
        ("failed", None, "crashed"),
        ("rejected", None, "crashed"),
    ],
)
def test_task_states_map_to_the_four_health_words(task_state, health, expected):
    assert process_state(task_state=task_state, container_health=health) == expected


def test_cpu_and_memory_are_computed_like_docker_stats():
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 4},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 30 * 1024 * 1024, "stats": {"total_inactive_file": 10 * 1024 * 1024}},
    }
    assert cpu_percent(stats) == 80.0
    assert memory_mb(stats) == 20.0
    assert cpu_percent({}) == 0.0


@pytest.mark.docker
def test_a_sample_records_the_health_of_a_real_service_and_the_nodes(run_service, app_name, rds):
    # busy for a moment so the CPU reading is not zero, then idle
    run_service(app_name, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 600")
    sampler = Sampler(interval=1)
    try:
        sampler.proc_stat.percent()
        result = wait_for(
            lambda: sampler.sample_once().get(app_name), timeout=30, message="a sample of the app"
        )
    finally:
        sampler.stop()
    [process] = result
    assert process["process"] == "web" and process["instance"] == "web.1" and process["release"] == 1
    assert process["state"] == "healthy" and process["restarts"] == 0
    assert process["memory_mb"] > 0 and process["cpu_percent"] >= 0
    assert latest_snapshot(health_key(app_name))["processes"] == result
    nodes = latest_snapshot(NODES_KEY)["nodes"]
    local = [n for n in nodes if n["cpu_percent"] is not None]
    assert len(local) == 1 and local[0]["state"] == "ready" and local[0]["tasks"] >= 1
    assert 0 < local[0]["memory_used_mb"] < local[0]["memory_total_mb"]
    assert 0 < local[0]["disk_used_percent"] < 100


@pytest.mark.docker
def test_a_crash_and_restart_becomes_a_crashed_event(run_service, app_name, rds):
    run_service(app_name, "echo starting; sleep 2; exit 3", restart="on-failure")
    sampler = Sampler(interval=1)
    try:
        sampler.sample_once()

        def crashed():
            sampler.sample_once()
            return [f for _, f in rds.xrange(f"berth:events:{app_name}") if f[b"kind"] == b"crashed"]

        events = wait_for(crashed, timeout=40, interval=0.5, message="a crashed event")
    finally:
        sampler.stop()
    assert b"web.1 of v1 crashed and was restarted" in events[0][b"message"]

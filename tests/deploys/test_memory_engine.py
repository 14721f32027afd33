"""The in-memory engine the deploy tests stand on (berth.runtime.memory): chosen by setting, one engine shared."""

from berth.runtime.memory import InMemoryScheduler
from berth.runtime.scheduler import ProcessSpec, get_scheduler

from tests.deploys.helpers import answer


def test_berth_scheduler_memory_selects_one_shared_in_memory_engine(settings):
    settings.BERTH_SCHEDULER = "memory"
    first, second = get_scheduler(), get_scheduler()
    assert isinstance(first, InMemoryScheduler)
    assert first.engine is second.engine  # what one layer starts, another sees


def test_a_replica_change_keeps_the_tasks_and_any_other_change_replaces_them(scheduler):
    spec = ProcessSpec(
        app="demo", team="t", release=1, process="web", image="img:1", command="serve", env={}, replicas=1
    )
    scheduler.ensure_process(spec)
    [first] = scheduler.tasks(app="demo")
    spec.replicas = 2
    assert scheduler.spec_matches(spec) is True
    scheduler.ensure_process(spec)
    assert first.id in {task.id for task in scheduler.tasks(app="demo")}
    spec.env = {"MODE": "new"}
    assert scheduler.spec_matches(spec) is False
    scheduler.ensure_process(spec)
    tasks = scheduler.tasks(app="demo")
    assert len(tasks) == 2 and first.id not in {task.id for task in tasks}
    assert answer(first.node_address, first.published_port) is None  # its server stopped with it
    assert all(answer(t.node_address, t.published_port) == f"demo-v1-web slot {t.slot}" for t in tasks)
    assert scheduler.remove(app="demo") == ["demo-v1-web"]
    assert scheduler.tasks(app="demo") == []

"""The worker's pool grows with work and shrinks back once it is done, though beat's small tasks keep arriving."""

import time
from typing import NamedTuple

import celery.worker.autoscale as celery_autoscale
import pytest
from berth.config.autoscaler import LAST_PROCESS_IDLE_S, PoolAutoscaler
from berth.core.redis import redis_client
from berth.deploys.retiring import RETIRE_GRACE, RETIRING_KEY
from django.conf import settings


class Pool:
    """What the autoscaler asks of billiard's pool: its size, grown and shrunk."""

    def __init__(self, processes: int):
        self.num_processes = processes

    def grow(self, n: int) -> None:
        self.num_processes += n

    def shrink(self, n: int) -> None:
        self.num_processes -= n

    def maintain_pool(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(celery_autoscale, "monotonic", lambda: now[0])
    return now


@pytest.fixture(autouse=True)
def no_retirements():
    """No deploy's retirement noted (one keeps the pool's processes: berth.deploys.retiring); none left after."""
    redis_client().delete(RETIRING_KEY)
    yield
    redis_client().delete(RETIRING_KEY)


@pytest.fixture
def reserved(monkeypatch):
    requests: set = set()
    monkeypatch.setattr(celery_autoscale.state, "reserved_requests", requests)
    return requests


class Request(NamedTuple):
    """A request the worker holds, as the autoscaler sees it: its task's name (`n` tells apart one task's), and
    when it started (the wall clock; None: waiting)."""

    name: str
    n: int = 0
    time_start: float | None = None


def task(name: str, n: int = 0, *, running_s: float | None = None) -> Request:
    return Request(name, n, None if running_s is None else time.time() - running_s)


BUILD = "berth.builds.run"
TICK = "berth.jobs.tick"
SCHEDULED = sorted({entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()})


def _ten_pushes_then_beats_ticks(scaler, clock, reserved) -> list[int]:
    """Ten tasks at once, done in 20 s; then a cron tick every 15 s for two minutes. The pool's size when the
    work is done, then at each tick."""
    reserved.update(task(BUILD, n) for n in range(10))
    scaler.maybe_scale()
    clock[0] += 20
    reserved.clear()
    scaler.maybe_scale()
    sizes = [scaler.processes]  # the work just done: within keepalive of the growth
    for _ in range(8):
        clock[0] += 15
        reserved.add(task(TICK))
        scaler.maybe_scale(req=task(TICK))
        reserved.clear()
        scaler.maybe_scale()
        sizes.append(scaler.processes)
    return sizes


def test_a_grown_pool_shrinks_back_keepalive_after_its_growth_though_ticks_keep_arriving(clock, reserved):
    scaler = PoolAutoscaler(Pool(1), max_concurrency=10, min_concurrency=1, keepalive=30)
    sizes = _ten_pushes_then_beats_ticks(scaler, clock, reserved)
    assert sizes == [10] + [1] * 8  # back to one process 35 s after it grew


def test_celerys_own_autoscaler_keeps_a_grown_pool_while_ticks_arrive(clock, reserved):
    """Why PoolAutoscaler is there: the rule it replaces, with the same work."""
    scaler = celery_autoscale.Autoscaler(Pool(1), max_concurrency=10, min_concurrency=1, keepalive=30)
    assert _ten_pushes_then_beats_ticks(scaler, clock, reserved) == [10] * 9


def test_beats_tasks_falling_due_together_take_one_process_between_them(clock, reserved):
    scaler = PoolAutoscaler(Pool(1), max_concurrency=10, min_concurrency=1, keepalive=30)
    assert TICK in SCHEDULED and len(SCHEDULED) >= 5
    # beat's start: every entry is due at once; the one process has just started the first
    burst = [task(name) for name in SCHEDULED[1:]] + [task(SCHEDULED[0], running_s=0.01)]
    reserved.update(burst)
    scaler.maybe_scale(req=burst[0])
    assert scaler.processes == 1
    # a build gets a process of its own
    reserved.add(task(BUILD))
    scaler.maybe_scale(req=task(BUILD))
    assert scaler.processes == 2
    # so does a scheduled task that has run long (a backup): the ticks behind it get the next one
    reserved.remove(burst[-1])
    reserved.add(task(SCHEDULED[0], running_s=5))
    scaler.maybe_scale(req=task(TICK))
    assert scaler.processes == 3
    reserved.update(task(BUILD, n) for n in range(1, 4))
    scaler.maybe_scale(req=task(BUILD, 3))
    assert scaler.processes == 6


def test_celerys_own_autoscaler_forks_for_each_scheduled_task(clock, reserved):
    """What PoolAutoscaler.qty changes: the same burst forks a process per task."""
    scaler = celery_autoscale.Autoscaler(Pool(1), max_concurrency=10, min_concurrency=1, keepalive=30)
    reserved.update(task(name) for name in SCHEDULED)
    scaler.maybe_scale(req=task(TICK))
    assert scaler.processes == len(SCHEDULED)


def test_the_worker_uses_it():
    assert settings.CELERY_WORKER_AUTOSCALER == "berth.config.autoscaler:PoolAutoscaler"
    from berth.config.celery import app

    assert app.conf.worker_autoscaler == "berth.config.autoscaler:PoolAutoscaler"


def test_with_no_minimum_the_last_process_ends_once_the_pool_is_idle_and_returns_with_work(clock, reserved):
    """deploy/Procfile's `--autoscale 10,0`: an idle worker keeps no pool process; beat's tick gets one for a
    moment, a build holds its own as long as it runs, and a burst's processes shrink by Celery's rule first."""
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30)
    scaler.maybe_scale()
    assert scaler.processes == 0  # idle from the start
    sizes = []
    for _ in range(3):  # beat's tick every 15 s: a process while it runs, none a moment after
        reserved.add(task(TICK))
        scaler.maybe_scale(req=task(TICK))
        sizes.append(scaler.processes)
        reserved.clear()
        clock[0] += 1
        scaler.maybe_scale()
        sizes.append(scaler.processes)
        clock[0] += 2.5
        scaler.maybe_scale()
        sizes.append(scaler.processes)
        clock[0] += 11.5
    assert sizes == [1, 1, 0] * 3
    # a build running for a minute keeps its process throughout
    reserved.add(task(BUILD, running_s=0))
    scaler.maybe_scale(req=task(BUILD))
    for _ in range(60):
        clock[0] += 1
        scaler.maybe_scale()
        assert scaler.processes == 1
    reserved.clear()
    scaler.maybe_scale()
    assert scaler.processes == 1  # the deploy that follows a build finds it still there
    clock[0] += 3
    scaler.maybe_scale()
    assert scaler.processes == 0
    # ten at once: ten processes; done: back to one by Celery's rule (keepalive after the growth), then none
    reserved.update(task(BUILD, n) for n in range(10))
    scaler.maybe_scale(req=task(BUILD))
    assert scaler.processes == 10
    clock[0] += 20
    reserved.clear()
    scaler.maybe_scale()
    assert scaler.processes == 10  # within keepalive of the growth
    clock[0] += 15
    scaler.maybe_scale()
    assert scaler.processes == 1
    scaler.maybe_scale()
    assert scaler.processes == 0


class Hub:
    """The worker's event loop as the autoscaler uses it: callbacks to run later."""

    def __init__(self):
        self.later: list = []
        self.on_tick: set = set()

    def call_later(self, delay: float, callback) -> None:
        self.later.append((delay, callback))

    def run_later(self, clock) -> None:
        """Run the callbacks asked for (and those they ask for), the clock moved on to each; at most 20."""
        for _ in range(20):
            if not self.later:
                return
            delay, callback = self.later.pop(0)
            clock[0] += delay
            callback()


def test_in_the_event_loop_a_busy_pool_is_looked_at_again_until_its_last_process_can_end(clock, reserved):
    """Celery's event loop looks at the pool only when a task arrives and every 30 s: the follow-up looks are what
    end the last process after a tick (without them, ticks falling on those looks kept it for good)."""
    worker = type("Worker", (), {"hub": Hub()})()
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    reserved.add(task(TICK))
    scaler.maybe_scale(req=task(TICK))
    # one look asked for, however many tasks arrive
    assert scaler.processes == 1 and len(worker.hub.later) == 1
    scaler.maybe_scale(req=task(TICK))
    assert len(worker.hub.later) == 1
    reserved.clear()
    started = clock[0]
    worker.hub.run_later(clock)
    assert scaler.processes == 0 and worker.hub.later == []
    assert clock[0] - started >= LAST_PROCESS_IDLE_S  # seen idle that long first


def test_a_task_reserved_without_a_message_gets_a_process_on_the_loops_next_turn(clock, reserved):
    """A countdown come due (a webhook's retry) is reserved by the worker's timer, not by a message arriving: the
    event loop's turn grows the empty pool for it."""
    worker = type("Worker", (), {"hub": Hub()})()
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    for tick in worker.hub.on_tick:
        tick()
    assert scaler.processes == 0  # nothing reserved: no fork
    reserved.add(task("berth.hooks.deliver"))
    for tick in worker.hub.on_tick:
        tick()
    assert scaler.processes == 1


def test_the_last_process_is_kept_when_it_turns_out_busy(clock, reserved):
    class BusyPool(Pool):
        def shrink(self, n: int) -> None:
            raise ValueError("Can't shrink pool. All processes busy!")  # billiard's words

    worker = type("Worker", (), {"hub": Hub()})()
    pool = BusyPool(1)
    scaler = PoolAutoscaler(pool, max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    scaler.maybe_scale()  # seen idle: looked at again once the last process may end
    _, look = worker.hub.later.pop()
    clock[0] += LAST_PROCESS_IDLE_S + 1
    look()
    assert scaler.processes == 1
    # billiard refused: the pool is looked at again soon, and the process ends once billiard lets it
    assert len(worker.hub.later) == 1
    pool.shrink = lambda n: Pool.shrink(pool, n)
    worker.hub.run_later(clock)
    assert scaler.processes == 0


def test_a_look_from_elsewhere_while_one_is_pending_does_not_end_the_looks(clock, reserved):
    """Measured in a worker: the tick's tasks done, a look from elsewhere (Celery's own) found the pool idle while
    the busy pool's look was pending; that look then found it idle too short, asked for none, and the process
    lived on to the next tick, and the next (the worker at two processes in every idle sample)."""
    worker = type("Worker", (), {"hub": Hub()})()
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    reserved.add(task(TICK))
    scaler.maybe_scale(req=task(TICK))  # busy: a look asked for in BUSY_LOOK_S
    reserved.clear()
    clock[0] += 0.3
    scaler.maybe_scale()  # Celery's own look: idle now; the busy look is still pending
    worker.hub.run_later(clock)
    assert scaler.processes == 0


def test_the_pool_keeps_its_processes_while_a_deploys_retirement_runs_in_one(clock, reserved):
    """A deploy's replaced releases are removed by a thread of the pool process that deployed (berth.deploys
    .retiring). Ended with that process 2 s after the deploy (as deploy/Procfile runs the worker), the removal and
    its release.retired event waited for the sweep: tests/e2e/test_push_to_live.py's event never came in 60 s."""
    worker = type("Worker", (), {"hub": Hub()})()
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    reserved.add(task("berth.deploys.deploy"))
    scaler.maybe_scale(req=task("berth.deploys.deploy"))
    assert scaler.processes == 1
    redis_client().zadd(RETIRING_KEY, {"shop:2": time.time()})  # the deploy is done; its retirement runs
    reserved.clear()
    worker.hub.run_later(clock)
    assert scaler.processes == 1 and worker.hub.later  # kept, and looked at again
    redis_client().zrem(RETIRING_KEY, "shop:2")  # the thread is done
    worker.hub.run_later(clock)
    assert scaler.processes == 0


def test_a_retirement_older_than_its_grace_is_the_sweeps_and_keeps_no_process(clock, reserved):
    worker = type("Worker", (), {"hub": Hub()})()
    scaler = PoolAutoscaler(Pool(0), max_concurrency=10, min_concurrency=0, keepalive=30, worker=worker)
    redis_client().zadd(RETIRING_KEY, {"shop:2": time.time() - RETIRE_GRACE.total_seconds() - 1})
    reserved.add(task(TICK))
    scaler.maybe_scale(req=task(TICK))
    reserved.clear()
    worker.hub.run_later(clock)
    assert scaler.processes == 0

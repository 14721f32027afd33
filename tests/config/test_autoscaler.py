"""The worker's pool grows with work and shrinks back once it is done, though beat's small tasks keep arriving."""

import celery.worker.autoscale as celery_autoscale
import pytest
from berth.config.celery import PoolAutoscaler
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


@pytest.fixture
def reserved(monkeypatch):
    requests: set = set()
    monkeypatch.setattr(celery_autoscale.state, "reserved_requests", requests)
    return requests


def _ten_pushes_then_beats_ticks(scaler, clock, reserved) -> list[int]:
    """Ten tasks at once, done in 20 s; then a cron tick every 15 s for two minutes. The pool's size when the
    work is done, then at each tick."""
    reserved.update(f"push-{n}" for n in range(10))
    scaler.maybe_scale()
    clock[0] += 20
    reserved.clear()
    scaler.maybe_scale()
    sizes = [scaler.processes]  # the work just done: within keepalive of the growth
    for _ in range(8):
        clock[0] += 15
        reserved.add("tick")
        scaler.maybe_scale(req="tick")
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


def test_the_worker_uses_it():
    assert settings.CELERY_WORKER_AUTOSCALER == "berth.config.celery:PoolAutoscaler"
    from berth.config.celery import app

    assert app.conf.worker_autoscaler == "berth.config.celery:PoolAutoscaler"

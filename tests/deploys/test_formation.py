"""Scaling and restarting the live release (berth.deploys.formation) against the in-memory engine and router:
web never loses its ready servers, and the router gets new tasks before old ones stop."""

import pytest
from berth.apps.services import domain_add
from berth.deploys.errors import DeployError, NothingLive
from berth.deploys.formation import app_restart, formation_apply, formation_update
from berth.runtime.memory import Boot, Program
from berth.runtime.scheduler import SchedulerError

from tests.deploys.helpers import answer, endpoints, position, route_to


def scale(app, **replicas: int) -> None:
    """Change the formation and roll it out, as the formation_changed receiver's task does."""
    formation_update(
        app=app, changes=[{"process": p, "replicas": n} for p, n in replicas.items()], actor=None
    )
    formation_apply(app=app, processes=sorted(replicas))


def web_services(scheduler, app) -> list[tuple[int, int]]:
    return [(s.generation, s.replicas) for s in scheduler.services(app=app.name) if s.process == "web"]


def test_scaling_web_up_keeps_its_tasks_and_routes_the_new_ones(live_app, scheduler, memory_router):
    app = live_app.app
    first = scheduler.tasks(app=app.name, process="web")[0].id
    scale(app, web=3)
    assert web_services(scheduler, app) == [(0, 3)]
    assert first in {task.id for task in scheduler.tasks(app=app.name, process="web")}
    live = endpoints(scheduler, app, release=1)
    assert len(live) == 3
    assert memory_router.endpoints(app.name) == live
    assert all(answer(*endpoint) for endpoint in live)


def test_scaling_web_down_routes_a_fresh_generation_before_the_old_one_stops(
    live_app, scheduler, memory_router
):
    app = live_app.app
    scale(app, web=3)
    scale(app, web=1)
    assert web_services(scheduler, app) == [(1, 1)]
    live = endpoints(scheduler, app, release=1)
    assert memory_router.endpoints(app.name) == live
    journal = scheduler.journal
    started = position(journal, ("create", f"{app.name}-v1-web-g1", 1))
    removed = position(journal, ("remove", f"{app.name}-v1-web"))
    assert started < route_to(journal, app, live) < removed


def test_scaling_web_to_zero_unroutes_it_before_it_stops(live_app, scheduler, memory_router):
    app = live_app.app
    scale(app, web=0)
    assert endpoints(scheduler, app, release=1) == set()
    assert memory_router.endpoints(app.name) == set()
    journal = scheduler.journal
    assert route_to(journal, app, set()) < position(journal, ("scale", f"{app.name}-v1-web", 0))


def test_scaling_a_worker_up_and_down(make_app, deploy, scheduler):
    app = make_app()
    deploy(app, procfile={"web": "serve", "worker": "work"})
    assert len(scheduler.tasks(app=app.name, process="worker")) == 0  # new process types start at 0
    scale(app, worker=2)
    workers = scheduler.tasks(app=app.name, process="worker")
    assert [(t.state, t.published_port) for t in workers] == [("running", None)] * 2
    scale(app, worker=0)
    assert scheduler.tasks(app=app.name, process="worker") == []


def test_a_worker_that_crashes_when_scaled_up_fails_the_change(make_app, deploy, scheduler):
    app = make_app()
    scheduler.programs["work"] = Program(boot=Boot.CRASH)
    deploy(app, procfile={"web": "serve", "worker": "work"})  # at 0 replicas nothing crashes yet
    with pytest.raises(SchedulerError, match="3 tasks failed"):  # not wrapped in a DeployError here
        scale(app, worker=1)


def test_changing_web_memory_replaces_its_tasks_without_a_gap(live_app, scheduler, memory_router):
    app = live_app.app
    formation_update(app=app, changes=[{"process": "web", "memory_mb": 256}], actor=None)
    formation_apply(app=app, processes=["web"])
    assert web_services(scheduler, app) == [(1, 1)]
    live = endpoints(scheduler, app, release=1)
    assert memory_router.endpoints(app.name) == live
    journal = scheduler.journal
    assert route_to(journal, app, live) < position(journal, ("remove", f"{app.name}-v1-web"))


def test_a_new_domain_is_routed_to_the_running_tasks(live_app, scheduler, memory_router):
    app = live_app.app
    domain_add(app=app, hostname="www.example.org", actor=None)
    formation_apply(app=app, processes=[])  # what the domains_changed receiver's task does
    assert "www.example.org" in memory_router.state()[app.name]["hostnames"]
    assert memory_router.endpoints(app.name) == endpoints(scheduler, app, release=1)


def test_a_restart_replaces_every_task_and_routes_the_new_ones_first(live_app, scheduler, memory_router):
    app = live_app.app
    before = {task.id for task in scheduler.tasks(app=app.name)}
    assert app_restart(app=app) == ["web"]
    assert before.isdisjoint(task.id for task in scheduler.tasks(app=app.name))
    live = endpoints(scheduler, app, release=1)
    assert memory_router.endpoints(app.name) == live
    journal = scheduler.journal
    assert route_to(journal, app, live) < position(journal, ("remove", f"{app.name}-v1-web"))


def test_a_restart_whose_new_tasks_crash_leaves_the_running_ones_serving(live_app, scheduler, memory_router):
    app = live_app.app
    serving = memory_router.endpoints(app.name)
    scheduler.programs["serve"] = Program(boot=Boot.CRASH)  # what the app does now that it starts again
    with pytest.raises(DeployError, match="the running web processes were left alone"):
        app_restart(app=app)
    assert web_services(scheduler, app) == [(0, 1)]
    assert memory_router.endpoints(app.name) == serving
    assert all(answer(*endpoint) for endpoint in serving)


def test_a_restart_needs_a_live_release(make_app, scheduler):
    with pytest.raises(NothingLive):
        app_restart(app=make_app())

"""The roll-out of a release (berth.deploys.rollout) against the in-memory engine and router: health-gated
cut-over, drain before removal, automatic rollback of a release that does not boot, rollback, reconcile."""

import threading
import time

import pytest
from berth.apps.models import App, Domain, Formation
from berth.core.locks import app_lock
from berth.core.redis import redis_client
from berth.deploys import rollout
from berth.deploys.errors import DeployError
from berth.deploys.retiring import RETIRING_KEY
from berth.deploys.rollout import (
    app_reconcile,
    apps_out_of_step,
    process_specs,
    release_deploy,
    release_retire,
    release_rollback,
)
from berth.discovery.services import reconcile_apps
from berth.observe.services import events_key
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create
from berth.runtime.memory import Boot, Program

from tests.deploys.helpers import answer, endpoints, position, retirements_finish, route_to


def status(release: Release) -> str:
    release.refresh_from_db()
    return release.status


def test_a_first_release_goes_live_behind_the_router(make_app, deploy, scheduler, memory_router):
    app = make_app()
    v1 = deploy(app)
    assert status(v1) == ReleaseStatus.LIVE
    live = endpoints(scheduler, app, release=1)
    assert len(live) == 1
    assert memory_router.endpoints(app.name) == live
    assert answer(*live.pop()) == f"{app.name}-v1-web slot 1"


def test_a_healthy_release_goes_live_and_the_previous_is_drained_then_removed(
    live_app, deploy, scheduler, memory_router
):
    app, v1 = live_app.app, live_app.v1
    old = endpoints(scheduler, app, release=1)
    v2 = deploy(app, image="img:2")
    assert (status(v1), status(v2)) == (ReleaseStatus.SUPERSEDED, ReleaseStatus.LIVE)
    retirements_finish()
    assert [(s.release, s.process) for s in scheduler.services(app=app.name)] == [(2, "web")]
    new = endpoints(scheduler, app, release=2)
    assert memory_router.endpoints(app.name) == new
    assert answer(*next(iter(new))) == f"{app.name}-v2-web slot 1"
    assert all(answer(*endpoint) is None for endpoint in old)  # its tasks are gone


def test_the_router_gets_the_new_endpoints_before_the_old_release_is_removed(live_app, deploy, scheduler):
    app = live_app.app
    deploy(app, image="img:2")
    retirements_finish()
    journal = scheduler.journal
    started = position(journal, ("create", f"{app.name}-v2-web", 1))
    routed = route_to(journal, app, endpoints(scheduler, app, release=2))
    removed = position(journal, ("remove", f"{app.name}-v1-web"))
    assert started < routed < removed


def test_a_release_whose_web_never_answers_fails_and_the_previous_keeps_serving(
    live_app, deploy, scheduler, memory_router, boot_timeout
):
    app, v1 = live_app.app, live_app.v1
    boot_timeout(1)
    scheduler.programs["img:silent"] = Program(boot=Boot.SILENT)
    serving = memory_router.endpoints(app.name)
    with pytest.raises(DeployError, match="did not answer HTTP.*the previous release keeps serving"):
        deploy(app, image="img:silent")
    v2 = Release.objects.get(app=app, version=2)
    assert (status(v1), status(v2)) == (ReleaseStatus.LIVE, ReleaseStatus.FAILED)
    assert "did not answer HTTP" in v2.status_reason
    assert [s.release for s in scheduler.services(app=app.name)] == [1]
    assert memory_router.endpoints(app.name) == serving
    assert all(answer(*endpoint) == f"{app.name}-v1-web slot 1" for endpoint in serving)
    routes = [entry for entry in scheduler.journal if entry[0] == "route"]
    assert len(routes) == 1  # v1's cut-over: v2's tasks never took traffic


def test_a_crash_looping_web_fails_the_deploy_with_its_last_lines(live_app, deploy, scheduler, memory_router):
    app, v1 = live_app.app, live_app.v1
    scheduler.programs["crash"] = Program(boot=Boot.CRASH, lines=("KeyError: 'DATABASE_URL'",))
    serving = memory_router.endpoints(app.name)
    with pytest.raises(DeployError, match="3 tasks failed"):
        deploy(app, image="img:2", procfile={"web": "crash"})
    v2 = Release.objects.get(app=app, version=2)
    assert status(v2) == ReleaseStatus.FAILED
    assert "KeyError: 'DATABASE_URL'" in v2.status_reason
    assert status(v1) == ReleaseStatus.LIVE
    assert memory_router.endpoints(app.name) == serving


def test_a_crash_looping_worker_fails_the_deploy(live_app, deploy, scheduler, memory_router):
    app = live_app.app
    scheduler.programs["crash"] = Program(boot=Boot.CRASH)
    # a release's new process type would start at 0 replicas, as on Heroku: one is asked for, so it must run
    Formation.objects.create(app=app, process="worker", replicas=1)
    v2 = release_create(
        app=app,
        image="img:2",
        procfile={"web": "serve", "worker": "crash"},
        description="",
        actor=None,
        status=ReleaseStatus.BUILT,
    )
    with pytest.raises(DeployError, match="worker.*3 tasks failed"):
        release_deploy(release=v2)
    assert status(v2) == ReleaseStatus.FAILED
    assert [s.release for s in scheduler.services(app=app.name)] == [1]
    assert memory_router.endpoints(app.name) == endpoints(scheduler, app, release=1)


def test_a_web_that_exits_while_booting_fails_at_once_not_at_the_boot_timeout(
    live_app, deploy, scheduler, boot_timeout
):
    app = live_app.app
    boot_timeout(30)
    scheduler.programs["img:dies"] = Program(
        boot=Boot.EXIT, lines=("ModuleNotFoundError: No module named 'app'",)
    )
    started = time.monotonic()
    with pytest.raises(DeployError, match="exited while booting") as failure:
        deploy(app, image="img:dies")
    assert time.monotonic() - started < 5
    assert "No module named 'app'" in str(failure.value)
    assert status(live_app.v1) == ReleaseStatus.LIVE


def test_the_release_command_runs_before_any_process_starts(live_app, deploy, scheduler):
    app = live_app.app
    deploy(app, image="img:2", procfile={"web": "serve", "release": "migrate"})
    journal = scheduler.journal
    assert position(journal, ("oneoff", f"{app.name} v2", "migrate")) < position(
        journal, ("create", f"{app.name}-v2-web", 1)
    )


def test_a_failing_release_command_stops_the_deploy_before_any_process_starts(
    live_app, deploy, scheduler, memory_router
):
    app = live_app.app
    scheduler.programs["migrate"] = Program(exit_code=1, lines=("relation already exists",))
    serving = memory_router.endpoints(app.name)
    with pytest.raises(DeployError, match=r"release command failed \(exit 1\)"):
        deploy(app, image="img:2", procfile={"web": "serve", "release": "migrate"})
    assert status(Release.objects.get(app=app, version=2)) == ReleaseStatus.FAILED
    assert not any(
        entry[0] == "create" and entry[1].startswith(f"{app.name}-v2-") for entry in scheduler.journal
    )
    assert status(live_app.v1) == ReleaseStatus.LIVE
    assert memory_router.endpoints(app.name) == serving


def test_an_image_with_no_command_is_refused_before_anything_starts(live_app, deploy, scheduler):
    app = live_app.app
    scheduler.programs["img:bare"] = Program(has_command=False)
    with pytest.raises(DeployError, match="the image has no command to run"):
        deploy(app, image="img:bare", procfile={})
    assert [s.release for s in scheduler.services(app=app.name)] == [1]


def test_a_release_that_is_not_pending_or_built_is_not_deployed(live_app, scheduler):
    with pytest.raises(DeployError, match="v1 is live, not ready to deploy"):
        release_deploy(release=live_app.v1)


def test_a_rollback_rolls_the_old_image_and_config_out_as_a_new_release(
    live_app, deploy, scheduler, memory_router
):
    app = live_app.app
    deploy(app, image="img:2", config={"MODE": "new"})
    v3 = release_rollback(app=app, version=1, actor=None)
    assert (v3.version, v3.image, v3.status) == (3, "img:1", ReleaseStatus.PENDING)
    release_deploy(release=v3)  # what the release_created receiver queues
    assert status(v3) == ReleaseStatus.LIVE
    retirements_finish()
    assert [(s.release, s.image) for s in scheduler.services(app=app.name)] == [(3, "img:1")]
    assert memory_router.endpoints(app.name) == endpoints(scheduler, app, release=3)
    assert v3.config == live_app.v1.config == {}


def test_reconcile_routes_the_live_release_again_after_the_router_lost_it(live_app, scheduler, memory_router):
    app = live_app.app
    memory_router.sync({})  # the router restarted empty
    assert app_reconcile(app) is False
    assert memory_router.endpoints(app.name) == endpoints(scheduler, app, release=1)


def test_reconcile_keeps_a_routed_endpoint_whose_check_does_not_answer_in_time(
    live_app, scheduler, memory_router
):
    """The watcher reconciles endpoints the deploy's worker routed (another process, so not in its own memory):
    on a busy machine its HTTP check can time out, and an endpoint the router serves must stay there (the
    router's own health checks judge a dead one); only an endpoint the router never had must answer first."""
    app = live_app.app
    serving = endpoints(scheduler, app, release=1)
    assert memory_router.endpoints(app.name) == serving
    rollout._routed.clear()  # this process is now the watcher: it never routed them itself
    for service in scheduler.engine.services.values():
        for task in service.newest():
            task.listener.close()  # running, but its check gets no answer
    assert app_reconcile(app) is False
    assert memory_router.endpoints(app.name) == serving


def test_the_watchers_full_round_reconciles_only_the_apps_whose_routes_differ_from_what_runs(
    make_app, deploy, scheduler, memory_router
):
    """With hundreds of apps the full round must not reconcile each (several engine calls and a rewrite of the
    router's records per app): it compares them all at once and reconciles those not in step."""
    in_step, lost, domain_added, scaled = apps = [make_app() for _ in range(4)]
    for app in apps:
        deploy(app)
    retirements_finish()

    def out_of_step() -> list[str]:  # as the watcher's round reads them: fresh from the database
        return [app.name for app in apps_out_of_step([App.objects.get(pk=app.pk) for app in apps])]

    assert out_of_step() == []

    memory_router.remove(app=lost.name)  # e.g. a router restarted from nothing
    Domain.objects.create(
        app=domain_added, hostname="www.example.test"
    )  # a change the watcher did not hear of
    scheduler.scale(app=scaled.name, release=1, process="web", replicas=2)  # a task more, not routed yet
    assert out_of_step() == [lost.name, domain_added.name, scaled.name]

    del scheduler.journal[:]
    assert reconcile_apps() == set()
    assert sorted(entry[1] for entry in scheduler.journal if entry[0] == "route") == sorted(
        [lost.name, domain_added.name, scaled.name]
    )
    assert out_of_step() == []
    assert "www.example.test" in memory_router.state()[domain_added.name]["hostnames"]
    assert len(memory_router.endpoints(scaled.name)) == 2
    assert memory_router.endpoints(lost.name) == endpoints(scheduler, lost, release=1)

    # an app in maintenance is always looked at: its hostnames' maintenance entries follow in app_reconcile only
    in_step.maintenance = True
    in_step.save(update_fields=["maintenance"])
    assert out_of_step() == [in_step.name]


def test_reconcile_leaves_the_router_to_a_deploy_holding_the_app_lock(live_app, memory_router):
    app = live_app.app
    memory_router.sync({})
    lock = app_lock(app.name, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert app_reconcile(app) is False
    finally:
        lock.release()
    assert memory_router.endpoints(app.name) == set()


def test_a_deploy_returns_when_the_new_release_serves_and_the_previous_is_removed_after(
    live_app, deploy, scheduler, memory_router, monkeypatch
):
    app, v1 = live_app.app, live_app.v1
    old = endpoints(scheduler, app, release=1)
    removing = threading.Event()
    let_go = threading.Event()
    remove = scheduler.remove

    def slow_remove(**kwargs):  # Swarm takes seconds to stop the old containers
        removing.set()
        assert let_go.wait(10)
        return remove(**kwargs)

    monkeypatch.setattr(scheduler, "remove", slow_remove)
    v2 = deploy(app, image="img:2")
    assert (status(v1), status(v2)) == (ReleaseStatus.SUPERSEDED, ReleaseStatus.LIVE)
    assert memory_router.endpoints(app.name) == endpoints(scheduler, app, release=2)
    assert removing.wait(5)
    assert sorted(s.release for s in scheduler.services(app=app.name)) == [1, 2]  # still stopping
    assert redis_client().zscore(RETIRING_KEY, f"{app.name}:2") is not None
    let_go.set()
    retirements_finish()
    assert [s.release for s in scheduler.services(app=app.name)] == [2]
    assert all(answer(*endpoint) is None for endpoint in old)
    assert redis_client().zscore(RETIRING_KEY, f"{app.name}:2") is None
    kinds = [fields[b"kind"] for _, fields in redis_client().xrange(events_key(app.name))]
    assert kinds[-2:] == [b"release.live", b"release.retired"]


def test_the_background_removal_spares_a_release_deploying_meanwhile(live_app, deploy, scheduler):
    app = live_app.app
    deploy(app, image="img:2")
    retirements_finish()
    v3 = release_create(app=app, image="img:3", procfile={"web": "serve"}, description="", actor=None)
    Release.objects.filter(pk=v3.pk).update(status=ReleaseStatus.DEPLOYING)
    for spec in process_specs(v3):
        scheduler.ensure_process(spec)
    Release.objects.filter(app=app, version=1).update(status=ReleaseStatus.SUPERSEDED)
    scheduler.ensure_process(process_specs(live_app.v1)[0])  # v1 left running by a removal that never ended
    assert release_retire(app=app, live=2) == [1]
    assert sorted(s.release for s in scheduler.services(app=app.name)) == [2, 3]

"""app.json applied to deploys, against the in-memory engine and router: its startup checks gate the cut-over
(and follow a config change and a rollback), its postdeploy script runs as a one-off and a failure is reported."""

import pytest
from berth.apps.models import Formation
from berth.audit.models import AuditEvent
from berth.deploys.errors import DeployError
from berth.deploys.formation import app_restart, formation_apply
from berth.deploys.rollout import release_deploy, release_postdeploy, release_rollback
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import config_update, release_create
from berth.runtime.memory import Program

from tests.deploys.helpers import answer


def _check(**fields) -> dict:
    return {
        "type": "startup",
        "path": "/ready",
        "attempts": 2,
        "timeout": 1,
        "wait": 0,
        "initialDelay": 0,
        "name": "",
        "content": "",
        **fields,
    }


def _deploy(app, *, image: str, healthchecks: dict | None, log=None):
    release = release_create(
        app=app,
        image=image,
        procfile={"web": "serve"},
        description=image,
        actor=None,
        status=ReleaseStatus.BUILT,
        healthchecks=healthchecks,
    )
    return release_deploy(release=release, log=log or (lambda line: None))


def test_a_release_whose_startup_check_fails_is_not_routed_and_the_previous_keeps_serving(
    live_app, scheduler, memory_router
):
    app = live_app.app
    serving = memory_router.endpoints(app.name)
    with pytest.raises(DeployError) as error:
        _deploy(app, image="img:2", healthchecks={"web": [_check(content="database: ok")]})
    assert "web did not pass app.json's startup check (GET /ready, 2 attempts): status 200 without " in str(
        error.value
    )
    assert "the previous release keeps serving" in str(error.value)
    assert Release.objects.get(app=app, version=2).status == ReleaseStatus.FAILED
    assert memory_router.endpoints(app.name) == serving
    assert all(answer(*endpoint) == f"{app.name}-v1-web slot 1" for endpoint in serving)


def test_a_release_passing_its_startup_checks_goes_live_and_the_deploy_says_which_ran(
    live_app, scheduler, memory_router
):
    app = live_app.app
    lines = []
    checks = {"web": [_check(content="-v2-web"), _check(path="/", name="home")]}
    release = _deploy(app, image="img:2", healthchecks=checks, log=lines.append)
    assert release.status == ReleaseStatus.LIVE
    assert "-----> Checking web with app.json's startup checks: /ready, /" in lines


def test_a_config_change_keeps_the_builds_checks_and_a_rollback_takes_the_old_releases(
    live_app, scheduler, memory_router
):
    app = live_app.app
    checks = {"web": [_check(content="-web slot")]}
    _deploy(app, image="img:2", healthchecks=checks)
    config_release = config_update(app=app, changes={"GREETING": "hi"}, actor=None)
    assert config_release.healthchecks == checks
    rollback = release_rollback(app=app, version=1, actor=None)
    assert rollback.healthchecks == {}


def test_the_postdeploy_script_runs_as_a_one_off_of_the_live_release(live_app, scheduler):
    lines = []
    scheduler.programs["seed"] = Program(lines=("seeded 3 rows",))
    assert release_postdeploy(release=live_app.v1, command="seed", log=lines.append)
    assert ("oneoff", f"{live_app.app.name} v1", "seed") in scheduler.journal
    assert lines[0] == "-----> Running app.json's postdeploy script: seed"
    assert "       seeded 3 rows" in lines


def test_a_failing_postdeploy_script_is_reported_in_the_log_the_events_and_the_audit(live_app, scheduler):
    lines = []
    scheduler.programs["seed"] = Program(exit_code=3, lines=("relation missing",))
    assert not release_postdeploy(release=live_app.v1, command="seed", log=lines.append)
    assert lines[-1] == (
        "-----> warning: app.json's postdeploy script failed (exit 3); v1 stays live; its output is above"
    )
    assert AuditEvent.objects.filter(
        action="release.postdeploy_failed", target=f"{live_app.app.name} v1"
    ).exists()
    assert Release.objects.get(pk=live_app.v1.pk).status == ReleaseStatus.LIVE


def test_a_scale_and_a_restart_hold_new_web_tasks_to_app_jsons_startup_checks_too(
    live_app, scheduler, memory_router
):
    """The deploy passed its check with one task ("slot 1"); a second task answers "slot 2", which this check
    refuses: scaling up, or restarting two tasks, fails instead of routing a task the release's own check would not
    have let in (with Berth's default check, HTTP 200, both would pass)."""
    app = live_app.app
    release = _deploy(app, image="img:2", healthchecks={"web": [_check(content="slot 1")]})
    assert release.status == ReleaseStatus.LIVE
    Formation.objects.filter(app=app, process="web").update(replicas=2)
    with pytest.raises(DeployError, match="startup check"):
        formation_apply(app=app, processes=["web"])
    assert all(answer(*endpoint).endswith("slot 1") for endpoint in memory_router.endpoints(app.name))
    with pytest.raises(DeployError, match="startup check"):
        app_restart(app=app)
    Formation.objects.filter(app=app, process="web").update(replicas=1)
    formation_apply(app=app, processes=["web"])
    assert app_restart(app=app) == ["web"]
    assert all(answer(*endpoint).endswith("slot 1") for endpoint in memory_router.endpoints(app.name))

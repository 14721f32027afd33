"""Deploys against the in-memory engine and router: the roll-out code runs unchanged, every web task is a real
little HTTP server on 127.0.0.1, and nothing touches Docker or HAProxy."""

import uuid
from types import SimpleNamespace

import pytest
from berth.accounts.services import team_create
from berth.apps.services import app_create
from berth.deploys import formation, rollout
from berth.deploys.rollout import release_deploy
from berth.releases.models import ReleaseStatus
from berth.releases.services import release_create
from berth.routing.memory import InMemoryRouter
from berth.routing.router import ROUTERS
from berth.runtime.memory import InMemoryScheduler, MemoryEngine
from berth.runtime.scheduler import SCHEDULERS
from django.contrib.auth import get_user_model

from tests.deploys.helpers import retirements_finish


class RecordingRouter(InMemoryRouter):
    """The in-memory router, writing each call into the scheduler's journal: one order of events for both seams."""

    def __init__(self, journal: list[tuple]):
        super().__init__()
        self.journal = journal

    def apply(self, *, app, hostnames, endpoints, drain_timeout=None, wait=True, retire_idle=True) -> None:
        self.journal.append(("route", app, tuple(endpoints)))
        super().apply(
            app=app,
            hostnames=hostnames,
            endpoints=endpoints,
            drain_timeout=drain_timeout,
            wait=wait,
            retire_idle=retire_idle,
        )

    def remove(self, *, app, drain_timeout=None) -> None:
        self.journal.append(("unroute", app))
        super().remove(app=app, drain_timeout=drain_timeout)

    def endpoints(self, app: str) -> set[tuple[str, int]]:
        return {(address, port) for address, port, _ in self.state().get(app, {}).get("endpoints", [])}


@pytest.fixture
def scheduler(settings, monkeypatch):
    """This test's own in-memory engine, chosen the way Berth chooses it (BERTH_SCHEDULER=memory)."""
    settings.BERTH_SCHEDULER = "memory"
    scheduler = InMemoryScheduler(engine=MemoryEngine())
    monkeypatch.setitem(SCHEDULERS, "memory", lambda: scheduler)
    # the release phase runs through berth.runtime.oneoff.run_oneoff, beside the Scheduler seam, not behind it
    monkeypatch.setattr(rollout, "run_oneoff", scheduler.run_oneoff)
    yield scheduler
    retirements_finish()  # a removal still running would touch the engine after it closed
    scheduler.engine.close()


@pytest.fixture
def memory_router(settings, monkeypatch, scheduler):
    settings.BERTH_ROUTER = "memory"
    router = RecordingRouter(scheduler.journal)
    monkeypatch.setitem(ROUTERS, "memory", lambda: router)
    return router


@pytest.fixture
def boot_timeout(monkeypatch):
    """Set the roll-out's boot timeout (BERTH_BOOT_TIMEOUT, read once at import) for this test."""

    def set_timeout(seconds: float) -> None:
        # formation imported the value by name: both modules hold their own copy
        for module in (rollout, formation):
            monkeypatch.setattr(module, "BOOT_TIMEOUT", seconds)

    return set_timeout


@pytest.fixture
def make_app(db):
    def make():
        # app names are global in Redis (the app lock) and in the roll-out's memory of routed endpoints
        suffix = uuid.uuid4().hex[:8]
        user = get_user_model().objects.create_user(username=f"u{suffix}", password=None)
        team = team_create(name=f"t{suffix}", actor=user)
        return app_create(team=team, name=f"a{suffix}", actor=user)

    return make


@pytest.fixture
def deploy(scheduler, memory_router):
    """Make the next release of an app and roll it out, as a build or a config change does."""

    def deploy_release(
        app, *, image: str = "img:1", procfile: dict | None = None, config: dict | None = None
    ):
        release = release_create(
            app=app,
            image=image,
            procfile={"web": "serve"} if procfile is None else procfile,
            description=f"{image}",
            actor=None,
            status=ReleaseStatus.BUILT,
            config=config,
        )
        return release_deploy(release=release)

    return deploy_release


@pytest.fixture
def live_app(make_app, deploy):
    """An app whose v1 is live behind the router."""
    app = make_app()
    return SimpleNamespace(app=app, v1=deploy(app))

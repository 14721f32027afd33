"""The app page's state (berth.live.app_state) and its socket (/ws/apps/<app>/state): one snapshot of releases,
processes, formation and builds, sent on connect and again as soon as an app event says something changed.

The engine is the in-memory one (BERTH_SCHEDULER=memory); Redis, PostgreSQL and the ASGI application are real.
The browser against the whole platform is tests/e2e/test_dashboard_state.py.
"""

import asyncio
import time

import pytest
import redis
from asgiref.sync import async_to_sync
from berth.accounts.services import membership_add, token_create
from berth.apps.services import app_create
from berth.config.asgi import application
from berth.deploys.formation import formation_update
from berth.live.app_state import app_live_state
from berth.observe.services import event_record, events_key, logs_key
from berth.releases.models import ReleaseStatus
from berth.releases.services import release_create, release_set_status
from berth.runtime.memory import InMemoryScheduler, MemoryEngine
from berth.runtime.scheduler import SCHEDULERS, ProcessSpec
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from tests.observe.communicator import WebsocketCommunicator

TIMEOUT = 5
PROCFILE = {"web": "python app.py", "release": "python migrate.py"}


@pytest.fixture
def scheduler(settings, monkeypatch):
    settings.BERTH_SCHEDULER = "memory"
    scheduler = InMemoryScheduler(engine=MemoryEngine())
    monkeypatch.setitem(SCHEDULERS, "memory", lambda: scheduler)
    yield scheduler
    scheduler.engine.close()


@pytest.fixture
def shop(transactional_db, make_user, make_team, scheduler, settings):
    """An app with v1 live and v2 deploying (its Procfile has a release phase), an owner, a viewer and an outsider."""
    owner, viewer, outsider = make_user(), make_user(), make_user()
    team = make_team(owner=owner)
    membership_add(team=team, user=viewer, role="viewer", actor=owner)
    make_team(owner=outsider)
    app = app_create(team=team, name=f"st-{time.time_ns() % 10**8}", actor=owner)
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(events_key(app.name), logs_key(app.name))
    v1 = release_create(
        app=app, image="img:1", procfile=PROCFILE, description="first", actor=owner, status="live"
    )
    v2 = release_create(app=app, image="img:2", procfile=PROCFILE, description="second", actor=owner)
    release_set_status(release=v2, from_statuses=["pending"], to_status=ReleaseStatus.DEPLOYING)
    tokens = {
        name: token_create(user=user, name="t")[1]
        for name, user in (("viewer", viewer), ("outsider", outsider))
    }
    yield type("Shop", (), dict(app=app, owner=owner, viewer=viewer, v1=v1, v2=v2, tokens=tokens))
    client.delete(events_key(app.name), logs_key(app.name))


def _web(app, release: int, replicas: int) -> ProcessSpec:
    return ProcessSpec(
        app=app.name,
        team=app.team.name,
        release=release,
        process="web",
        image=f"img:{release}",
        command=None,
        env={},
        replicas=replicas,
    )


def test_the_state_has_one_current_version_and_no_rollback_to_a_release_still_deploying(shop):
    state = app_live_state(app=shop.app, user=shop.viewer)

    assert state["current_version"] == state["live_version"] == 1
    assert [(r["version"], r["status"], r["can_roll_back"]) for r in state["releases"]] == [
        (2, "deploying", False),
        (1, "live", False),
    ]
    assert state["settled"] is True


def test_the_release_phase_is_not_a_process_type_to_scale(shop):
    state = app_live_state(app=shop.app, user=shop.viewer)

    assert [f["process"] for f in state["formation"]] == ["web"]


def test_scaling_the_release_phase_is_refused_in_one_line(shop):
    with pytest.raises(ValidationError) as refused:
        formation_update(app=shop.app, changes=[{"process": "release", "replicas": 1}], actor=shop.owner)
    assert "release phase" in refused.value.message_dict["process"][0]

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=shop.owner, name='o')[1]}")
    response = api.patch(
        f"/api/v1/apps/{shop.app.name}/formation", [{"process": "release", "replicas": 1}], format="json"
    )
    assert response.status_code == 400, response.content
    assert "release phase" in response.json()["detail"], response.json()  # what the CLI prints, in one line


def test_a_superseded_release_can_be_rolled_back_to_once_the_new_one_is_live(shop):
    release_set_status(release=shop.v1, from_statuses=["live"], to_status=ReleaseStatus.SUPERSEDED)
    between = app_live_state(app=shop.app, user=shop.viewer)
    release_set_status(release=shop.v2, from_statuses=["deploying"], to_status=ReleaseStatus.LIVE)
    after = app_live_state(app=shop.app, user=shop.viewer)

    # the moment between the two updates of a roll-out is not a state to show
    assert between["settled"] is False and between["live_version"] is None
    assert after["settled"] is True and after["current_version"] == 2
    assert [(r["version"], r["status"], r["can_roll_back"]) for r in after["releases"]] == [
        (2, "live", False),
        (1, "superseded", True),
    ]


def test_the_processes_are_what_berth_ps_lists(shop, scheduler):
    scheduler.ensure_process(_web(shop.app, 1, 2))

    rows = app_live_state(app=shop.app, user=shop.viewer)["processes"]

    assert [(r["process"], r["release"]) for r in rows] == [("web", 1), ("web", 1)]
    assert all(r["address"] is None for r in rows)  # the node's address only for who may see nodes


def _communicator(app: str, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/apps/{app}/state", headers=[(b"authorization", f"Bearer {token}".encode())]
    )


def test_the_socket_sends_the_state_then_the_change_an_event_announces_within_a_second(shop, scheduler):
    async def scenario():
        comm = _communicator(shop.app.name, shop.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        first = await comm.receive_json_from(timeout=TIMEOUT)
        assert first["type"] == "state" and first["current_version"] == 1

        # what release_deploy does at the cut-over: supersede, mark live, record the event
        started = time.monotonic()
        await asyncio.to_thread(_cut_over, shop)
        second = await comm.receive_json_from(timeout=TIMEOUT)
        lag = time.monotonic() - started
        assert second["current_version"] == 2
        assert {r["version"]: r["status"] for r in second["releases"]} == {2: "live", 1: "superseded"}
        assert lag < 1.0, lag
        await comm.disconnect()

    async_to_sync(scenario)()


def _cut_over(shop) -> None:
    release_set_status(release=shop.v1, from_statuses=["live"], to_status=ReleaseStatus.SUPERSEDED)
    time.sleep(0.3)  # longer than a poll could miss: the held-back state must still not be sent
    release_set_status(release=shop.v2, from_statuses=["deploying"], to_status=ReleaseStatus.LIVE)
    event_record(app=shop.app.name, kind="release.live", message="v2 is live")


def test_the_socket_follows_a_scale_without_an_event(shop, scheduler):
    scheduler.ensure_process(_web(shop.app, 1, 2))

    async def scenario():
        comm = _communicator(shop.app.name, shop.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        first = await comm.receive_json_from(timeout=TIMEOUT)
        assert len(first["processes"]) == 2
        await asyncio.to_thread(scheduler.ensure_process, _web(shop.app, 1, 1))
        second = await comm.receive_json_from(timeout=TIMEOUT)
        assert len(second["processes"]) == 1
        await comm.disconnect()

    async_to_sync(scenario)()


def test_an_outsider_is_refused(shop):
    async def scenario():
        comm = _communicator(shop.app.name, shop.tokens["outsider"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        message = await comm.receive_output(timeout=TIMEOUT)
        assert message["type"] == "websocket.close" and message["code"] == 4404
        await comm.wait()

    async_to_sync(scenario)()

"""The WebSocket consumers through the real ASGI application (auth middleware included) and the real Redis."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from berth.config.asgi import application
from berth.observe.services import event_record, log_entries_append
from django.urls import path

from tests.observe.communicator import WebsocketCommunicator

TIMEOUT = 5


def line(n: int, process: str = "web", stream: str = "stdout") -> dict:
    return {
        "ts": f"2026-01-01T00:00:{n % 60:02d}.000000Z",
        "process": process,
        "instance": f"{process}.1",
        "stream": stream,
        "line": f"{process} line {n}",
    }


def communicator(url: str, *, token: str | None = None, headers: list | None = None, app=application):
    headers = list(headers or [])
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(app, url, headers=headers)


async def closed_with(comm) -> int:
    """Connect and expect a close (with no data before it); returns the close code."""
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    message = await comm.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    await comm.wait()
    return message.get("code")


async def receive_many(comm, count: int) -> list[dict]:
    return [await comm.receive_json_from(timeout=TIMEOUT) for _ in range(count)]


def run(coroutine_function, *args):
    return async_to_sync(coroutine_function)(*args)


def test_a_viewer_gets_the_last_lines_then_live_lines(people, app_name):
    log_entries_append(app=app_name, entries=[line(n) for n in range(1, 6)])

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/logs?tail=3", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        replayed = await receive_many(comm, 3)
        assert [m["line"] for m in replayed] == ["web line 3", "web line 4", "web line 5"]
        assert replayed[0] == {
            "type": "line",
            "id": replayed[0]["id"],
            "ts": "2026-01-01T00:00:03.000000Z",
            "process": "web",
            "instance": "web.1",
            "stream": "stdout",
            "line": "web line 3",
        }
        await asyncio.sleep(0.2)
        log_entries_append(app=app_name, entries=[line(6), line(7, stream="stderr")])
        live = await receive_many(comm, 2)
        assert [(m["line"], m["stream"]) for m in live] == [
            ("web line 6", "stdout"),
            ("web line 7", "stderr"),
        ]
        assert await comm.receive_nothing(0.3)
        await comm.disconnect()

    run(scenario)


def test_token_in_the_query_and_a_session_cookie_are_accepted(people, app_name):
    from django.test import Client

    log_entries_append(app=app_name, entries=[line(1)])
    browser = Client()
    browser.force_login(people.viewer)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario():
        for comm in (
            communicator(f"/ws/apps/{app_name}/logs?token={people.tokens['viewer']}"),
            communicator(f"/ws/apps/{app_name}/logs", headers=[(b"cookie", cookie)]),
            communicator(
                f"/ws/apps/{app_name}/logs",
                headers=[(b"cookie", cookie), (b"host", b"berth.test"), (b"origin", b"http://berth.test")],
            ),
        ):
            assert (await comm.connect(timeout=TIMEOUT))[0]
            assert (await comm.receive_json_from(timeout=TIMEOUT))["line"] == "web line 1"
            await comm.disconnect()

    run(scenario)


def test_a_session_cookie_sent_by_another_site_counts_as_anonymous(people, app_name):
    from django.test import Client

    browser = Client()
    browser.force_login(people.viewer)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario():
        comm = communicator(
            f"/ws/apps/{app_name}/logs",
            headers=[(b"cookie", cookie), (b"host", b"berth.test"), (b"origin", b"https://evil.test")],
        )
        assert await closed_with(comm) == 4401

    run(scenario)


def test_an_outsider_and_an_unknown_app_are_closed_with_4404_before_any_data(people, app_name):
    log_entries_append(app=app_name, entries=[line(1)])

    async def scenario():
        for url in (f"/ws/apps/{app_name}/logs", f"/ws/apps/{app_name}/events"):
            assert await closed_with(communicator(url, token=people.tokens["outsider"])) == 4404
        assert (
            await closed_with(communicator("/ws/apps/no-such-app/logs", token=people.tokens["owner"])) == 4404
        )

    run(scenario)


def test_anonymous_and_a_wrong_token_are_closed_with_4401(people, app_name):
    async def scenario():
        for url in (f"/ws/apps/{app_name}/logs", f"/ws/apps/{app_name}/events", "/ws/nodes", "/ws/builds/1"):
            assert await closed_with(communicator(url)) == 4401
        comm = communicator(f"/ws/apps/{app_name}/logs", token="berth_not-a-real-token")
        assert await closed_with(comm) == 4401

    run(scenario)


def test_the_process_filter_applies_to_replay_and_live_lines(people, app_name):
    entries = [line(n, process="worker" if n % 3 else "web") for n in range(1, 31)]  # web: 3, 6, ... 30
    log_entries_append(app=app_name, entries=entries)

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/logs?tail=4&process=web", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        replayed = await receive_many(comm, 4)
        assert [m["line"] for m in replayed] == [f"web line {n}" for n in (21, 24, 27, 30)]
        await asyncio.sleep(0.2)
        log_entries_append(app=app_name, entries=[line(31, "worker"), line(32, "web"), line(33, "worker")])
        assert (await comm.receive_json_from(timeout=TIMEOUT))["line"] == "web line 32"
        assert await comm.receive_nothing(0.3)
        await comm.disconnect()

    run(scenario)


def test_gap_entries_and_platform_events_show_in_the_log(people, app_name):
    log_entries_append(
        app=app_name,
        entries=[line(1), {**line(2), "stream": "gap", "line": "web.1 stdout: lines may be missing"}],
    )
    event_record(app=app_name, kind="release.live", message="release v3 live")

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/logs?follow=0", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        messages = await receive_many(comm, 3)
        assert messages[1] == {"type": "gap", "message": "web.1 stdout: lines may be missing"}
        assert messages[2]["stream"] == "platform" and messages[2]["line"] == "release v3 live"
        assert messages[2]["process"] == "berth" and messages[2]["instance"] == "release.live"
        # follow=0 (the CLI's `berth logs` without -t): replay, then a normal close
        assert (await comm.receive_output(timeout=TIMEOUT)) == {"type": "websocket.close", "code": 1000}

    run(scenario)


def test_build_output_streams_from_the_start_until_the_end_marker_then_closes(people, rds):
    from berth.builds.logstream import LogStream
    from berth.builds.models import Build

    build = Build.objects.create(app=people.app, source="git")
    log = LogStream(rds, build.stream_key)
    rds.delete(build.stream_key)
    log.append("Step 1/3")
    log.append("Step 2/3")

    async def scenario():
        comm = communicator(f"/ws/builds/{build.pk}", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        assert await receive_many(comm, 2) == [
            {"type": "line", "line": "Step 1/3"},
            {"type": "line", "line": "Step 2/3"},
        ]
        log.append("Step 3/3")
        log.close("succeeded")
        assert await receive_many(comm, 2) == [
            {"type": "line", "line": "Step 3/3"},
            {"type": "end", "status": "succeeded"},
        ]
        assert (await comm.receive_output(timeout=TIMEOUT))["type"] == "websocket.close"

        outsider = communicator(f"/ws/builds/{build.pk}", token=people.tokens["outsider"])
        assert await closed_with(outsider) == 4404
        missing = communicator("/ws/builds/999999999", token=people.tokens["viewer"])
        assert await closed_with(missing) == 4404

    try:
        run(scenario)
    finally:
        rds.delete(build.stream_key)


def test_a_finished_build_whose_stream_expired_replays_its_saved_log(people, rds, monkeypatch):
    from berth.builds.models import Build
    from berth.live import consumers

    monkeypatch.setattr(consumers, "BLOCK_MS", 100)
    build = Build.objects.create(app=people.app, source="git", status="failed", log="one\ntwo")
    rds.delete(build.stream_key)

    async def scenario():
        comm = communicator(f"/ws/builds/{build.pk}", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        assert await receive_many(comm, 3) == [
            {"type": "line", "line": "one"},
            {"type": "line", "line": "two"},
            {"type": "end", "status": "failed"},
        ]

    run(scenario)


class SlowLogs:
    """The logs consumer with a client that takes 20 ms per frame and a queue of 20."""

    @staticmethod
    def app():
        from berth.config.routing import websocket_urlpatterns  # noqa: F401  (the real routes stay untouched)
        from berth.live.consumers import AppLogsConsumer
        from berth.live.middleware import websocket_auth
        from channels.routing import URLRouter

        class Slow(AppLogsConsumer):
            outbox_size = 20

            async def send(self, text_data=None, bytes_data=None, close=False):
                await asyncio.sleep(0.02)
                await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

        return websocket_auth(URLRouter([path("ws/apps/<str:app>/logs", Slow.as_asgi())]))


def test_a_slow_client_gets_a_dropped_marker_and_every_line_is_either_sent_or_counted(people, app_name):
    total = 300

    async def scenario():
        comm = communicator(
            f"/ws/apps/{app_name}/logs?tail=0", token=people.tokens["viewer"], app=SlowLogs.app()
        )
        assert (await comm.connect(timeout=TIMEOUT))[0]
        await asyncio.sleep(0.3)
        for n in range(total):
            log_entries_append(app=app_name, entries=[line(n)])
        received, dropped = [], 0
        while len(received) + dropped < total:
            message = await comm.receive_json_from(timeout=TIMEOUT)
            if message["type"] == "dropped":
                dropped += message["count"]
            else:
                received.append(int(message["line"].rsplit(" ", 1)[1]))
        await comm.disconnect()
        return received, dropped

    received, dropped = run(scenario)
    assert dropped > 0
    assert received == sorted(received) and len(set(received)) == len(received)
    assert received[-1] == total - 1  # the newest lines are kept, the oldest dropped


def test_events_replay_then_live_and_health_snapshots(people, app_name, rds, monkeypatch):
    from berth.live import consumers
    from berth.observe.metrics import health_key

    monkeypatch.setattr(consumers, "TICK_SECONDS", 0.2)
    event_record(app=app_name, kind="build.started", message="build 1 started")
    processes = [
        {
            "id": "t1",
            "process": "web",
            "release": 1,
            "state": "healthy",
            "node": "n1",
            "cpu_percent": 1.5,
            "memory_mb": 12.0,
            "restarts": 0,
        }
    ]
    rds.xadd(health_key(app_name), {"data": json.dumps({"ts": 0, "processes": processes})})

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/events", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        first = await comm.receive_json_from(timeout=TIMEOUT)
        assert first["type"] == "event" and first["kind"] == "build.started"
        assert first["message"] == "build 1 started" and first["ts"].endswith("Z")
        await asyncio.sleep(0.1)
        event_record(app=app_name, kind="release.live", message="release v1 live")
        seen = {"event": [], "health": []}
        while not (seen["event"] and seen["health"]):
            message = await comm.receive_json_from(timeout=TIMEOUT)
            seen[message["type"]].append(message)
        assert seen["event"][0]["kind"] == "release.live"
        assert seen["health"][0] == {"type": "health", "processes": processes}
        await comm.disconnect()

    run(scenario)


def test_nodes_are_shown_to_platform_admins_only(people, rds, monkeypatch):
    from berth.live import consumers
    from berth.observe.metrics import NODES_KEY

    monkeypatch.setattr(consumers, "TICK_SECONDS", 0.2)
    nodes = [
        {
            "id": "n1",
            "hostname": "h",
            "state": "ready",
            "availability": "active",
            "address": "127.0.0.1",
            "cpu_percent": 3.0,
            "memory_used_mb": 1.0,
            "memory_total_mb": 2.0,
            "disk_used_percent": 50.0,
            "tasks": 2,
        }
    ]
    entry_id = rds.xadd(NODES_KEY, {"data": json.dumps({"ts": 0, "nodes": nodes})})

    async def tenants():
        # a team owner is a tenant: the nodes are the platform's (berth.nodes.selectors.can_see_nodes)
        assert await closed_with(communicator("/ws/nodes", token=people.tokens["owner"])) == 4403
        assert await closed_with(communicator("/ws/nodes", token=people.tokens["viewer"])) == 4403

    async def platform_admin():
        comm = communicator("/ws/nodes", token=people.tokens["owner"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        message = await comm.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "nodes" and isinstance(message["nodes"], list)
        await comm.disconnect()

    try:
        run(tenants)
        people.owner.is_superuser = True
        people.owner.save()
        run(platform_admin)
    finally:
        rds.xdel(NODES_KEY, entry_id)


@pytest.mark.parametrize("tail", ["abc", "-5", "99999999"])
def test_a_bad_or_huge_tail_is_clamped_not_an_error(people, app_name, tail):
    log_entries_append(app=app_name, entries=[line(n) for n in range(3)])

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/logs?follow=0&tail={tail}", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        messages = []
        while (message := await comm.receive_output(timeout=TIMEOUT))["type"] == "websocket.send":
            messages.append(json.loads(message["text"]))
        return messages

    messages = run(scenario)
    assert len(messages) in (0, 3)


def test_a_connection_that_joins_behind_the_shared_reader_catches_up_in_order_exactly_once(app_name):
    from berth.observe.hub import StreamHub, Subscription
    from berth.observe.replay import log_message
    from berth.observe.services import logs_key

    [start] = log_entries_append(app=app_name, entries=[line(0)])

    async def scenario():
        hub = StreamHub.get(logs_key(app_name), log_message)
        first, second = [], []
        a = Subscription(start, lambda e: first.append(json.loads(e[2])["line"]))
        await hub.subscribe(a)
        log_entries_append(app=app_name, entries=[line(n) for n in (1, 2, 3)])
        for _ in range(50):
            if len(first) == 3:
                break
            await asyncio.sleep(0.05)
        # the hub has moved past line 3; a newcomer whose replay ended at line 0 must still get 1, 2, 3
        b = Subscription(start, lambda e: second.append(json.loads(e[2])["line"]))
        await hub.subscribe(b)
        log_entries_append(app=app_name, entries=[line(4)])
        for _ in range(50):
            if len(second) == 4 and len(first) == 4:
                break
            await asyncio.sleep(0.05)
        hub.unsubscribe(a)
        hub.unsubscribe(b)
        hub.task.cancel()
        return first, second

    first, second = run(scenario)
    expected = [f"web line {n}" for n in (1, 2, 3, 4)]
    assert first == expected and second == expected


def test_a_follower_outlives_a_quiet_stream_longer_than_the_redis_read_timeout(people, app_name):
    """redis-py 8 times a socket read out after 5 s by default; a log tail quiet for longer must stay open."""

    async def scenario():
        comm = communicator(f"/ws/apps/{app_name}/logs?tail=0", token=people.tokens["viewer"])
        assert (await comm.connect(timeout=TIMEOUT))[0]
        assert await comm.receive_nothing(7.5)  # longer than a 5 s read timeout and the 5 s XREAD block
        log_entries_append(app=app_name, entries=[line(1)])
        assert (await comm.receive_json_from(timeout=TIMEOUT))["line"] == "web line 1"
        await comm.disconnect()

    run(scenario)


def test_a_socket_closed_right_after_it_opened_leaves_no_task_or_subscription_behind(people, app_name):
    from berth.observe.hub import StreamHub

    event_record(app=app_name, kind="build.started", message="build 1 started")
    log_entries_append(app=app_name, entries=[line(1)])

    async def scenario():
        for url in (f"/ws/apps/{app_name}/events", f"/ws/apps/{app_name}/logs"):
            comm = communicator(url, token=people.tokens["viewer"])
            # no waiting for the accept: the close is queued while the consumer still starts up
            await comm.send_input({"type": "websocket.connect"})
            await comm.send_input({"type": "websocket.disconnect", "code": 1001})
            await comm.wait(timeout=TIMEOUT)
        await asyncio.sleep(0.5)
        left = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "StreamConsumer._run"]
        followers = [
            hub.key for hubs in StreamHub._hubs.values() for hub in hubs.values() if hub.subscriptions
        ]
        return left, followers

    assert run(scenario) == ([], [])

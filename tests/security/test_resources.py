"""One app cannot exhaust a process every team shares: the log shipper, the builder's log stream, the WebSocket
replays and the web process's threads.

- A line longer than BERTH_LOG_LINE_MAX_BYTES is stored as several entries, each but the last marked `more`: none of
  it lost or cut (real shipper following a real Swarm service into Redis; the real build log stream).
- A line that never ends (an app printing megabytes without a newline) is shipped as it grows.
- A replay to one connection (logs `tail`, a build's output from its start) holds at most the newest
  BERTH_LOG_REPLAY_MAX_LINES lines, with a note saying what was left out.
- More open build-output streams than the web process has pool threads do not stop a git request or an API call.
"""

import json
import os
import socket
import threading
import time
import uuid

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync
from berth.config.asgi import application
from django.conf import settings as django_settings

from tests.conftest import wait_for
from tests.observe.communicator import WebsocketCommunicator
from tests.observe.conftest import run_service  # noqa: F401  (fixture)

CAP = 1024
TIMEOUT = 10


@pytest.fixture
def small_lines(settings):
    settings.BERTH_LOG_LINE_MAX_BYTES = CAP
    return CAP


@pytest.fixture
def rds():
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def app_name(rds):
    name = f"res-{uuid.uuid4().hex[:10]}"
    yield name
    rds.delete(f"berth:logs:{name}", f"berth:events:{name}", f"berth:health:{name}")


def entries(rds, key: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rds.xrange(key)]


def joined(parts: list[dict[str, str]]) -> list[str]:
    """What a reader that joins the pieces of long lines gets."""
    lines, going_on = [], False
    for entry in parts:
        if going_on:
            lines[-1] += entry["line"]
        else:
            lines.append(entry["line"])
        going_on = "more" in entry
    return lines


# --- long lines: split, not lost --------------------------------------------------------------------------------


@pytest.mark.docker
def test_the_shipper_splits_a_long_app_line_into_marked_pieces_none_lost(
    run_service,  # noqa: F811
    app_name,
    rds,
    small_lines,
):
    from berth.observe.shipper import Shipper

    # 5000 characters, 2 bytes each in UTF-8: 10000 bytes (Docker itself cuts it at 16 KiB, the shipper at 1 KiB)
    script = "printf 'start\\n'; head -c 5000 /dev/zero | tr '\\0' 'x' | sed 's/x/é/g'; printf '\\nafter\\n'; sleep 600"
    shipper = Shipper(only_labels=run_service.only_labels).start(scan_interval=1)
    try:
        run_service(app_name, script)
        wait_for(
            lambda: any(e["line"] == "after" for e in entries(rds, f"berth:logs:{app_name}")),
            timeout=60,
            message="the line after the long one",
        )
    finally:
        shipper.stop()
    shipped = entries(rds, f"berth:logs:{app_name}")
    assert joined(shipped) == ["start", "é" * 5000, "after"]
    pieces = [e for e in shipped if e["line"] not in ("start", "after")]
    assert len(pieces) >= 10 and all(len(e["line"].encode()) <= CAP for e in pieces), [
        len(e["line"].encode()) for e in shipped
    ]
    assert ["more" in e for e in pieces] == [True] * (len(pieces) - 1) + [False]


@pytest.mark.docker
def test_a_line_that_never_ends_is_shipped_as_it_grows(run_service, app_name, rds, small_lines):  # noqa: F811
    from berth.observe.shipper import Shipper

    # 200 KiB without a newline, then silence: nothing may wait in the shipper's memory for the end of the line
    script = "head -c 204800 /dev/zero | tr '\\0' 'y'; sleep 600"
    shipper = Shipper(only_labels=run_service.only_labels).start(scan_interval=1)
    try:
        run_service(app_name, script)
        wait_for(
            lambda: sum(len(e["line"]) for e in entries(rds, f"berth:logs:{app_name}")) >= 204800 - 16384,
            timeout=60,
            message="the unending line, shipped while it is still open",
        )
    finally:
        shipper.stop()
    shipped = entries(rds, f"berth:logs:{app_name}")
    assert all(set(e["line"]) == {"y"} and len(e["line"].encode()) <= CAP for e in shipped)
    assert all("more" in e for e in shipped)  # the line has not ended: every piece says it goes on


def test_a_long_build_line_is_split_in_the_log_stream_and_joined_in_the_stored_log(rds, small_lines):
    from berth.builds.logstream import LogStream
    from berth.runtime.build import BuildOutput as _Output

    stream = LogStream(rds, f"berth-test:res-build:{uuid.uuid4().hex}")
    try:
        output = _Output(stream.append)
        output.feed({"stream": "Step 1/2 : RUN print\n"})
        long_line = "ß" * 3000 + "€" * 1000  # 9000 bytes
        output.feed({"stream": long_line + "\n"})
        # a step printing without newlines: fed in pieces, it must not pile up in the builder
        for _ in range(100):
            output.feed({"stream": "z" * 1000})
        assert len(output.partial) <= CAP
        output.feed({"stream": "\nend\n"})
        raw = entries(rds, stream.key)
        assert all(len(e["line"].encode()) <= CAP for e in raw)
        assert stream.read_all() == ["Step 1/2 : RUN print", long_line, "z" * 100_000, "end"]
    finally:
        rds.delete(stream.key)


# --- bounded replays ----------------------------------------------------------------------------------------------


def ws_messages(url: str, token: str) -> list[dict]:
    """Every message /ws/... sends (follow=0 or a finished build) until it closes."""

    async def scenario():
        comm = WebsocketCommunicator(
            application, url, headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        received = []
        while True:
            message = await comm.receive_output(timeout=TIMEOUT)
            if message["type"] == "websocket.close":
                return received
            received.append(json.loads(message["text"]))

    return async_to_sync(scenario)()


@pytest.fixture
def owner_app(make_user, make_team, make_app, app_name):
    from types import SimpleNamespace

    from berth.accounts.services import token_create

    owner = make_user()
    app = make_app(app_name, team=make_team(owner=owner), actor=owner)
    return SimpleNamespace(app=app, token=token_create(user=owner, name="t")[1])


@pytest.mark.django_db(transaction=True)
def test_a_logs_replay_sends_at_most_the_limit_and_says_so(owner_app, settings, rds):
    from berth.observe.services import log_entries_append

    settings.BERTH_LOG_REPLAY_MAX_LINES = 50
    log_entries_append(
        app=owner_app.app.name,
        entries=[
            {"ts": "t", "process": "web", "instance": "web.1", "stream": "stdout", "line": f"l{n}"}
            for n in range(300)
        ],
    )
    got = ws_messages(f"/ws/apps/{owner_app.app.name}/logs?tail=100000&follow=0", owner_app.token)
    lines = [m["line"] for m in got if m["type"] == "line"]
    assert lines == [f"l{n}" for n in range(250, 300)]
    assert got[0]["type"] == "note" and "100000" in got[0]["message"] and "50" in got[0]["message"]


@pytest.mark.django_db(transaction=True)
def test_a_logs_replay_is_bounded_in_bytes_too(owner_app, settings, rds):
    from berth.observe.services import log_entries_append

    settings.BERTH_LOG_REPLAY_MAX_BYTES = 10_000
    line = "w" * 1000
    log_entries_append(
        app=owner_app.app.name,
        entries=[{"ts": "t", "process": "web", "instance": "web.1", "stream": "stdout", "line": line}] * 100,
    )
    got = ws_messages(f"/ws/apps/{owner_app.app.name}/logs?tail=100&follow=0", owner_app.token)
    assert len([m for m in got if m["type"] == "line"]) == 10 and got[0]["type"] == "note"


@pytest.mark.django_db(transaction=True)
def test_a_builds_replay_from_the_start_is_bounded_with_a_note(owner_app, settings, rds):
    from berth.builds.models import Build
    from berth.builds.services import log_stream

    settings.BERTH_LOG_REPLAY_MAX_LINES = 40
    build = Build.objects.create(app=owner_app.app, source="image", image_ref="x:1", status="succeeded")
    stream = log_stream(build)
    try:
        for n in range(500):
            stream.append(f"step {n}")
        stream.close("succeeded")
        got = ws_messages(f"/ws/builds/{build.pk}", owner_app.token)
        assert got[0]["type"] == "note" and "left out" in got[0]["message"]
        lines = [m["line"] for m in got if m["type"] == "line"]
        assert 0 < len(lines) <= 40 and lines[-1] == "step 499"
        assert got[-1] == {"type": "end", "status": "succeeded"}
    finally:
        rds.delete(build.stream_key)


# --- open streams do not pin the web process's threads -------------------------------------------------------------


def open_stream(port: int, path: str, token: str) -> socket.socket:
    """A client that asks for a stream and then just keeps the connection open (reads nothing more)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_open_build_streams_do_not_stop_git_or_the_api(tenant, berth_platform):
    from berth.builds.models import Build

    # asyncio's default executor (what git's request reads and asgiref's thread_sensitive=False calls run in)
    # has min(32, CPUs + 4) threads per web worker; the platform runs 2 workers: more than 2 x (N + 1) streams
    pool = min(32, (os.cpu_count() or 1) + 4)
    count = 2 * (pool + 1) + 4
    build = Build.objects.create(app=tenant.app, source="image", image_ref="quiet:1", status="building")
    port = int(berth_platform.web_url.rsplit(":", 1)[1])
    path = f"/api/v1/apps/{tenant.app.name}/builds/{build.pk}/output"
    sockets = []
    try:
        for _ in range(count):
            sockets.append(open_stream(port, path, tenant.token))
        for sock in sockets:  # each one is being served: its headers came
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "a stream did not start"
        time.sleep(1)

        started = time.monotonic()
        answers = {}

        def probe(name, request):
            try:
                answers[name] = request().status_code
            except httpx.HTTPError as exc:
                answers[name] = repr(exc)

        auth = ("git", tenant.token)
        probes = [
            threading.Thread(
                target=probe,
                args=(
                    f"info-refs-{n}",
                    lambda: httpx.get(
                        f"{berth_platform.web_url}/git/{tenant.app.name}.git/info/refs",
                        params={"service": "git-upload-pack"},
                        auth=auth,
                        timeout=15,
                    ),
                ),
            )
            for n in range(4)
        ]
        probes.append(
            threading.Thread(
                target=probe,
                args=(
                    "api",
                    lambda: httpx.get(
                        f"{berth_platform.web_url}/api/v1/apps/{tenant.app.name}",
                        headers={"Authorization": f"Bearer {tenant.token}"},
                        timeout=15,
                    ),
                ),
            )
        )
        for thread in probes:
            thread.start()
        for thread in probes:
            thread.join(30)
        assert answers == {**{f"info-refs-{n}": 200 for n in range(4)}, "api": 200}, answers
        assert time.monotonic() - started < 15
    finally:
        for sock in sockets:
            sock.close()

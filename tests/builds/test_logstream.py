"""A build's log as a Redis stream (real Redis, db 15): appended by one thread, followed live by another."""

import threading
import time
import uuid

import pytest
import redis
from berth.builds.logstream import MAX_LINES, LogStream
from django.conf import settings


@pytest.fixture
def stream():
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"berth-test:buildlog:{uuid.uuid4().hex}"
    yield LogStream(client, key)
    client.delete(key)
    client.close()


def test_a_follower_sees_each_line_as_it_is_appended_and_stops_at_close(stream):
    received = []

    def follow():
        for entry_id, line in stream.follow(block_ms=200, timeout=10):
            received.append((entry_id, line, time.monotonic()))

    follower = threading.Thread(target=follow)
    follower.start()
    sent = []
    for number in range(5):
        stream.append(f"Step {number + 1}/5 : RUN échō {number}")
        sent.append(time.monotonic())
        time.sleep(0.1)
    stream.close("succeeded")
    follower.join(timeout=5)
    assert not follower.is_alive()
    assert [line for _, line, _ in received] == [f"Step {n + 1}/5 : RUN échō {n}" for n in range(5)]
    # live, not at the end: each line arrived well before the next was sent
    assert all(got - put < 0.1 for (_, _, got), put in zip(received, sent, strict=True))
    assert stream.status() == "succeeded"


def test_follow_resumes_after_the_last_id_seen(stream):
    ids = [stream.append(f"line {n}") for n in range(4)]
    stream.close("failed")
    assert [line for _, line in stream.follow(last_id=ids[1], timeout=1)] == ["line 2", "line 3"]


def test_follow_gives_up_after_the_timeout_without_lines(stream):
    stream.append("only line")
    started = time.monotonic()
    assert [line for _, line in stream.follow(block_ms=100, timeout=0.5)] == ["only line"]
    assert 0.5 <= time.monotonic() - started < 3
    assert stream.status() is None


def test_read_all_returns_the_lines_without_the_end_marker(stream):
    stream.append("a")
    stream.append("b")
    stream.close("succeeded")
    assert stream.read_all() == ["a", "b"]
    assert stream.redis.ttl(stream.key) > 0


def test_the_stream_is_capped(stream):
    with stream.redis.pipeline(transaction=False) as pipe:
        for number in range(MAX_LINES + 2000):
            pipe.xadd(stream.key, {"line": str(number)})
        pipe.execute()
    stream.append("last")
    length = stream.redis.xlen(stream.key)
    assert MAX_LINES <= length < MAX_LINES + 1000
    assert stream.read_all()[-1] == "last"

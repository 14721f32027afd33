"""Metrics history on the server (berth.observe.history) in the real Redis: what one process writes another reads
(so a page reload finds it), 24 h of 10 s windows stay bounded, and the 5-minute roll-ups take over after."""

import uuid

import pytest
import redis
from berth.observe.history import (
    RAW_KEEP,
    RESOLUTION,
    ROLLUP,
    history_delete,
    history_key,
    history_read,
    sample_write,
)
from berth.observe.services import app_streams_delete

from tests.conftest import REPO_DIR

START = 1_800_000_000  # a window start (divisible by 300), far from now so nothing else writes there


@pytest.fixture
def app(rds):
    name = f"hist-{uuid.uuid4().hex[:10]}"
    history_delete(app=name, client=rds)
    yield name
    history_delete(app=name, client=rds)


def test_history_written_by_the_sampler_is_read_back_by_a_fresh_client(app, rds, settings):
    for i in range(6):
        values = {"cpu": 2.5 + i, "mem": 40, "n": 1, "rps": 3.0, "e5xx": 0.1, "p95": 120 + i}
        assert sample_write(app=app, process="web", window=START + i * RESOLUTION, values=values, client=rds)
    # the same window twice is refused, not duplicated
    assert not sample_write(app=app, process="web", window=START, values={"cpu": 99}, client=rds)
    # a new connection, as a reloaded page's request gets in the web process
    fresh = redis.Redis.from_url(settings.REDIS_URL)
    history = history_read(app=app, seconds=3600, now=START + 60, client=fresh)
    web = history["processes"]["web"]
    assert history["step"] == RESOLUTION
    assert web["t"] == [START + i * RESOLUTION for i in range(6)]
    assert web["cpu"] == [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    assert web["p95"][-1] == 125 and web["rps"][0] == 3.0 and web["e5xx"][0] == 0.1
    # following live: only what is newer than the last window seen
    newer = history_read(app=app, seconds=3600, now=START + 60, since=START + 30, client=fresh)
    assert newer["processes"]["web"]["t"] == [START + 40, START + 50]


def test_24_hours_of_windows_stay_bounded_and_roll_up_every_5_minutes(app, rds):
    # a day and an hour of 10 s windows, written as the sampler writes them
    windows = (RAW_KEEP + 3600) // RESOLUTION
    pipe_size = 500
    for first in range(0, windows, pipe_size):
        for i in range(first, min(first + pipe_size, windows)):
            sample_write(
                app=app,
                process="web",
                window=START + i * RESOLUTION,
                values={"cpu": 1.0, "mem": 50, "n": 1, "rps": 2.0, "e5xx": 0, "p95": 80},
                client=rds,
            )
    raw = rds.xlen(history_key(app, "web"))
    assert (
        raw <= RAW_KEEP // RESOLUTION + 1
    )  # trimmed as written: never more than 24 h (and 10 min) of windows
    assert raw >= 24 * 3600 // RESOLUTION
    rollups = rds.xrange(history_key(app, "web", rollup=True))
    assert len(rollups) == (windows * RESOLUTION) // ROLLUP - 1  # every closed 5 minutes, once
    assert rollups[0][1][b"cpu"] == b"1" and rollups[0][1][b"p95"] == b"80"
    memory = rds.memory_usage(history_key(app, "web")) + rds.memory_usage(
        history_key(app, "web", rollup=True)
    )
    (REPO_DIR / "test-artifacts").mkdir(exist_ok=True)
    (REPO_DIR / "test-artifacts" / "metrics-history-memory.txt").write_text(
        f"{raw} windows + {len(rollups)} roll-ups of one process: {memory} bytes\n"
    )
    assert memory < 600_000  # 500 apps x 1 process stay under 300 MB
    # 24 h read: averaged into steps a chart can draw
    day = history_read(app=app, seconds=24 * 3600, now=START + windows * RESOLUTION, client=rds)
    assert day["step"] == 120 and 700 <= len(day["processes"]["web"]["t"]) <= 721
    week = history_read(app=app, seconds=7 * 24 * 3600, now=START + windows * RESOLUTION, client=rds)
    assert week["step"] >= ROLLUP and week["processes"]["web"]["cpu"][0] == 1.0


def test_a_destroyed_apps_history_is_forgotten(app, rds):
    sample_write(app=app, process="web", window=START, values={"cpu": 1.0}, client=rds)
    app_streams_delete(app=app)
    assert history_read(app=app, seconds=3600, now=START + 60, client=rds)["processes"] == {}
    assert not rds.exists(history_key(app, "web"))

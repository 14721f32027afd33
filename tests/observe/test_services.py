"""Writes of the observe pipeline against the real Redis: events, log lines, retention by count and age."""

import time

from berth.observe.services import event_record, log_entries_append, log_trim, log_trim_all, logs_key


def entry(n: int) -> dict:
    return {
        "ts": "2026-01-01T00:00:00.000000Z",
        "process": "web",
        "instance": "web.1",
        "stream": "stdout",
        "line": f"l{n}",
    }


def test_an_event_goes_to_the_event_stream_and_as_a_platform_line_into_the_log(rds, app_name):
    event_id = event_record(app=app_name, kind="release.live", message="release v3 live")
    [(stored_id, event)] = rds.xrange(f"berth:events:{app_name}")
    assert stored_id.decode() == event_id
    assert event[b"kind"] == b"release.live" and event[b"message"] == b"release v3 live"
    [(_, line)] = rds.xrange(logs_key(app_name))
    assert line[b"stream"] == b"platform" and line[b"line"] == b"release v3 live"
    assert line[b"process"] == b"berth" and line[b"ts"] == event[b"ts"]


def test_the_log_keeps_at_most_the_retention_count(rds, app_name, monkeypatch):
    monkeypatch.setenv("BERTH_LOG_RETENTION_LINES", "50")
    for start in range(0, 1000, 100):
        log_entries_append(app=app_name, entries=[entry(n) for n in range(start, start + 100)])
    # every write trims with MAXLEN ~ (whole nodes of 100 entries, so a little over 50 may stay) ...
    assert 50 <= rds.xlen(logs_key(app_name)) <= 250
    # ... and the periodic trim cuts to the exact count, keeping the newest
    log_trim(app=app_name)
    kept = [fields[b"line"].decode() for _, fields in rds.xrange(logs_key(app_name))]
    assert kept == [f"l{n}" for n in range(950, 1000)]


def test_lines_older_than_the_retention_age_are_trimmed(rds, app_name, monkeypatch):
    monkeypatch.setenv("BERTH_LOG_RETENTION_DAYS", "2")
    now_ms = int(time.time() * 1000)
    key = logs_key(app_name)
    for age_days, n in ((5, 1), (3, 2), (1, 3)):
        rds.xadd(key, entry(n), id=f"{now_ms - age_days * 86_400_000}-0")
    log_entries_append(app=app_name, entries=[entry(4)])
    assert log_trim_all() >= 2
    assert [fields[b"line"] for _, fields in rds.xrange(key)] == [b"l3", b"l4"]


def test_event_record_does_not_raise_when_redis_is_unreachable(settings, app_name):
    settings.REDIS_URL = "redis://127.0.0.1:1/15"
    assert event_record(app=app_name, kind="scaled", message="web=2") == ""

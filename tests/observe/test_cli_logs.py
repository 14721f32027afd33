"""`berth logs` and `berth events` against a real gunicorn + uvicorn web process, over its WebSockets."""

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest
from berth.cli.client import CliError
from berth.cli.logs import events, logs
from berth.observe.services import event_record, log_entries_append

from tests.conftest import REPO_DIR, free_port, wait_for
from tests.observe.webserver import start_web

APP = "obs-cli-logs"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from django.conf import settings

    server = start_web(tmp_path_factory.mktemp("web-home"), redis_url=settings.REDIS_URL, apps=[APP])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def as_ada(web, monkeypatch, rds):
    rds.delete(f"berth:logs:{APP}", f"berth:events:{APP}")
    monkeypatch.setenv("BERTH_URL", web.url)
    monkeypatch.setenv("BERTH_TOKEN", web.tokens["ada"])
    yield web
    rds.delete(f"berth:logs:{APP}", f"berth:events:{APP}")


def entry(n: int, process: str = "web") -> dict:
    return {
        "ts": f"2026-01-01T00:00:0{n}.000000Z",
        "process": process,
        "instance": f"{process}.1",
        "stream": "stdout",
        "line": f"hello {n}",
    }


def namespace(**values) -> argparse.Namespace:
    return argparse.Namespace(
        **{"app": APP, "tail": False, "num": 100, "process": None, "json": False, **values}
    )


def test_logs_prints_the_last_lines_as_ts_process_instance_line(as_ada):
    log_entries_append(app=APP, entries=[entry(1), entry(2, "worker"), entry(3)])
    data, text = logs(namespace(num=2))
    assert text.splitlines() == [
        "2026-01-01T00:00:02.000000Z worker[worker.1]: hello 2",
        "2026-01-01T00:00:03.000000Z web[web.1]: hello 3",
    ]
    assert [m["line"] for m in data] == ["hello 2", "hello 3"]
    _, only_web = logs(namespace(process="web"))
    assert only_web.splitlines()[-1].endswith("web[web.1]: hello 3") and "worker" not in only_web


def test_logs_of_an_app_without_lines_says_so(as_ada):
    assert logs(namespace())[1] == f"No log lines for {APP} yet."


def test_events_prints_a_table_of_the_platform_events(as_ada):
    event_record(app=APP, kind="release.live", message="release v3 live")
    data, text = events(namespace(num=20))
    lines = text.splitlines()
    assert lines[0].split() == ["WHEN", "KIND", "MESSAGE"] and "release.live  release v3 live" in lines[2]
    assert data[0]["kind"] == "release.live"


def test_another_teams_app_a_bad_token_and_no_server_are_one_readable_error(as_ada, monkeypatch):
    monkeypatch.setenv("BERTH_TOKEN", as_ada.tokens["eve"])
    with pytest.raises(CliError, match=f"app '{APP}' not found"):
        logs(namespace())
    monkeypatch.setenv("BERTH_TOKEN", "berth_wrong")
    with pytest.raises(CliError, match="the server rejected your token"):
        events(namespace())
    monkeypatch.setenv("BERTH_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CliError, match="cannot reach Berth at"):
        logs(namespace())


FOLLOW = """
import argparse, sys
from berth.cli.logs import logs
logs(argparse.Namespace(app=sys.argv[1], tail=True, num=1, process=None, json=False))
print("stopped cleanly", flush=True)
"""


def test_logs_t_follows_live_lines_until_ctrl_c(as_ada, tmp_path):
    log_entries_append(app=APP, entries=[entry(1)])
    out = (tmp_path / "out.txt").open("w+")
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR / "platform"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", FOLLOW, APP], stdout=out, stderr=subprocess.STDOUT, env=env
    )
    try:
        read = lambda: (tmp_path / "out.txt").read_text()  # noqa: E731
        wait_for(lambda: "hello 1" in read(), timeout=60, message="the replayed line")
        for n in (2, 3):
            log_entries_append(app=APP, entries=[entry(n)])
        wait_for(lambda: "hello 3" in read(), timeout=30, message="the live lines")
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = read()
    assert "web[web.1]: hello 2" in text and "stopped cleanly" in text and "Traceback" not in text

"""The web process takes its PostgreSQL connections from a pool (berth/config/settings.py, BERTH_DATABASE_POOL).

Under ASGI each request runs its sync code in a thread of its own and a Django connection belongs to its thread:
without the pool, every request opened a PostgreSQL connection and left it open behind it (measured: 26 idle
connections after a benchmark). Here a real gunicorn with the uvicorn worker answers requests that each read the
database, and PostgreSQL counts the connections it holds.
"""

import os
import uuid

import httpx
import pytest
from django.db import connection

from tests.conftest import NO_TLS, REPO_DIR, free_port
from tests.support.processes import Child, wait_serving, web_command

pytestmark = pytest.mark.django_db

REQUESTS = 40


def _connections(application_name: str, since) -> tuple[int, int]:
    """How many connections the web process holds, and how many of them were opened after `since` (PostgreSQL's
    clock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE backend_start > %s) FROM pg_stat_activity"
            " WHERE application_name = %s",
            [since, application_name],
        )
        return cursor.fetchone()


def _now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def test_the_web_process_reuses_a_few_pooled_connections_across_requests(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's (SQLite opens a file, not a server connection)")
    database = connection.settings_dict
    name = f"berth-pool-{uuid.uuid4().hex[:8]}"
    url = (
        f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}?application_name={name}"
    )
    port = free_port()
    web = Child(
        "web",
        web_command(
            port
        ),  # preloaded, as deploy/Procfile: the pool must be opened in the worker, not its master
        log=tmp_path / "web.log",
        group=True,
        cwd=REPO_DIR,
        env={
            **os.environ,
            "BERTH_HOME": str(tmp_path / "home"),
            "DATABASE_URL": url,
            "PYTHONPATH": str(REPO_DIR / "platform"),
        },
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/apps"
        # an unknown token: each request looks it up in the database, then answers 401
        headers = {"Authorization": "Bearer berth_not-a-token"}

        def answered():
            try:
                return httpx.get(api, headers=headers, timeout=5, verify=NO_TLS).status_code == 401
            except httpx.TransportError:
                return False

        wait_serving(answered, [web], timeout=60, message="the web process to answer")
        started = _now()
        with httpx.Client(headers=headers, timeout=10) as client:
            for _ in range(REQUESTS):
                assert client.get(api).status_code == 401
        held, opened = _connections(name, started)
        assert 1 <= held <= 3, f"{held} connections after {REQUESTS} requests"
        # the pool may still be growing to its second connection as the requests begin; without it, each request
        # opens one (those still open at the end are counted: 8-11 were seen)
        assert opened <= 1, f"{opened} connections were opened during the {REQUESTS} requests"
    finally:
        web.stop()

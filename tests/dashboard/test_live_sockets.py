"""The dashboard's JavaScript against the real WebSocket consumers: gunicorn with the uvicorn worker serving the
test database, Redis streams written the way the shipper, builder and event recorder write them."""

import os
import secrets
import subprocess
from datetime import UTC, datetime

import httpx
import pytest
import redis

from tests.conftest import NO_TLS, REPO_DIR, free_port, wait_for
from tests.dashboard.conftest import PASSWORD, PageOpener, build_world
from tests.support.factories import QuickPBKDF2PasswordHasher


@pytest.fixture
def web(browser, transactional_db, settings, tmp_path):
    """gunicorn + uvicorn on a free port, on this test's database; stopped by PID afterwards."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the web process shares the test database: PostgreSQL only")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BERTH_HOME": str(settings.BERTH_HOME),  # the same config encryption key as this process
        "BERTH_WEB_PORT": str(port),
        "PYTHONPATH": str(REPO_DIR / "platform"),
    }
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(
        [
            str(REPO_DIR / ".venv/bin/gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
        ],
        cwd=REPO_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/login/", timeout=2, verify=NO_TLS).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=30, message="gunicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def live_app(web):
    """The world plus an app of a random name (its Redis streams are this test's alone); streams removed after."""
    from berth.apps.services import app_create

    world = build_world()
    # the web process knows only the default hasher, not the MD5 one these tests use: PBKDF2, which it checks at
    # the rounds each hash names (Django's 1,000,000 for each of the world's users was ~20 CPU-s of a run)
    hasher = QuickPBKDF2PasswordHasher()
    for user in world.users.values():
        user.password = hasher.encode(PASSWORD, hasher.salt())
        user.save(update_fields=["password"])
    app = app_create(team=world.team, name=f"dash-{secrets.token_hex(4)}", actor=world.users["owner"])
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    keys = [f"berth:logs:{app.name}", f"berth:events:{app.name}"]
    yield app, client, keys
    client.delete(*keys)
    client.close()


@pytest.fixture
def open_page(browser, web):
    opener = PageOpener(browser, web)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


def log_entry(n: int, process: str = "web") -> dict:
    return {
        "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "process": process,
        "instance": f"{process}.1",
        "stream": "stdout",
        "line": f"request {n} served",
    }


def test_log_lines_replay_then_arrive_live(live_app, open_page):
    from berth.observe.services import log_entries_append

    app, client, _ = live_app
    log_entries_append(app=app.name, entries=[log_entry(1), log_entry(2, "worker")], client=client)
    page = open_page("viewer")
    page.goto(f"/apps/{app.name}/")
    page.wait_for_function("document.querySelectorAll('#log-lines .log-line').length === 2")
    assert page.locator("#log-status").get_attribute("data-state") == "live"
    log_entries_append(app=app.name, entries=[log_entry(3)], client=client)
    page.wait_for_function("document.querySelector('#log-lines').innerText.includes('request 3 served')")
    assert page.locator("#log-lines .log-line").count() == 3


def test_platform_events_arrive_live(live_app, open_page):
    from berth.observe.services import event_record

    app, _, _ = live_app
    page = open_page("member")
    page.goto(f"/apps/{app.name}/")
    page.wait_for_function("document.querySelector('#events-status').dataset.state === 'live'")
    event_record(app=app.name, kind="scaled", message="web scaled to 2")
    page.wait_for_function("document.querySelector('#events-list').innerText.includes('web scaled to 2')")
    # the event is also a platform line in the log
    page.wait_for_function("document.querySelector('#log-lines').innerText.includes('web scaled to 2')")


def test_build_output_streams_to_the_end(live_app, open_page):
    from berth.builds.logstream import LogStream
    from berth.builds.models import Build

    app, client, keys = live_app
    build = Build.objects.create(app=app, source="image", image_ref="demo:v9", status="building")
    keys.append(build.stream_key)
    client.delete(build.stream_key)  # build ids restart with each test database; their streams do not
    stream = LogStream(client, build.stream_key)
    stream.append("-----> Pulling demo:v9")
    page = open_page("viewer")
    page.goto(f"/apps/{app.name}/builds/{build.pk}/")
    page.wait_for_function("document.querySelector('#build-log').innerText.includes('Pulling demo:v9')")
    stream.append("-----> Released v1")
    Build.objects.filter(pk=build.pk).update(status="succeeded")
    stream.close("succeeded")
    page.wait_for_function("document.querySelector('#build-status').dataset.status === 'succeeded'")
    assert page.locator("#build-log").inner_text().splitlines() == [
        "-----> Pulling demo:v9",
        "-----> Released v1",
    ]


def test_sockets_of_an_app_the_user_cannot_see_are_refused(live_app, open_page):
    app, _, _ = live_app
    page = open_page("outsider")
    page.goto(f"/apps/{app.name}/")  # a 404 page; the socket is tried from a page that can
    states = page.evaluate(
        """(name) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/apps/${name}/logs`);
            ws.onclose = (event) => resolve(event.code);
        })""",
        app.name,
    )
    assert states == 4404

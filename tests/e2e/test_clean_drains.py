"""Cut-overs end the old release's idle keep-alive connections cleanly: no ConnectionResetError in the app's log.

The app is the standard library's ThreadingHTTPServer speaking HTTP/1.1 keep-alive, which prints a traceback for
every connection reset under it. Ten deploys (an image deploy, then nine config changes) under keep-alive load
through the real router; the app's log is what the real shipper puts in Redis, as `berth logs` reads it.
"""

import io
import time

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.load import Load

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

APP_SOURCE = """
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = os.environ.get("DEPLOY", "0").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("listening", flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""

DOCKERFILE = """FROM berth/stack:trixie
COPY app.py /srv/app.py
CMD ["python3", "-u", "/srv/app.py"]
"""
IMAGE = "berth-test/stdlib-keepalive:1"
DEPLOYS = 10


@pytest.fixture
def stdlib_image():
    """The stdlib keep-alive app as a local image (labelled org.berth.test=1 for later runs to find)."""
    import tarfile

    from berth.runtime.client import docker_client

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE), ("app.py", APP_SOURCE)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker_client(timeout=300)
    client.images.build(
        fileobj=context, custom_context=True, tag=IMAGE, labels={"org.berth.test": "1"}, rm=True
    )
    return IMAGE


def api(berth_platform, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=berth_platform.web_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def live_version(app) -> int:
    from berth.releases.models import Release

    release = Release.objects.filter(app=app, status="live").order_by("-version").first()
    return release.version if release else 0


def test_ten_deploys_of_a_stdlib_keep_alive_app_log_no_connection_reset(berth_platform, tenant, stdlib_image):
    from berth.core.redis import redis_client
    from berth.observe.services import logs_key
    from berth.observe.shipper import Shipper
    from berth.runtime.scheduler import LABEL_APP

    app = tenant.app
    host = f"{app.name}.localhost"
    client = api(berth_platform, tenant.token)
    shipper = Shipper(only_labels={LABEL_APP: app.name}).start(scan_interval=1)
    try:
        answer = client.post(f"/apps/{app.name}/deploys", json={"image": stdlib_image})
        assert answer.status_code == 202, answer.text
        wait_for(lambda: live_version(app) == 1, timeout=180, message="v1 live")
        with Load(berth_platform.router_port, host, threads=8, max_seconds=600) as load:
            for deploy in range(2, DEPLOYS + 1):
                time.sleep(2)  # keep-alive connections to the live release pile up in the router's pool
                assert (
                    client.patch(f"/apps/{app.name}/config", json={"DEPLOY": str(deploy)}).status_code == 200
                )
                wait_for(lambda d=deploy: live_version(app) == d, timeout=180, message=f"v{deploy} live")
            time.sleep(2)
        # the last old release's services are removed in the background: wait for them, then for the shipper
        from berth.runtime.scheduler import get_scheduler

        wait_for(
            lambda: {s.release for s in get_scheduler().services(app=app.name)} == {DEPLOYS},
            timeout=120,
            message="the old releases removed",
        )
        time.sleep(3)
    finally:
        shipper.stop()
    lines = [
        entry[b"line"].decode(errors="replace")
        for _id, entry in redis_client().xrange(logs_key(app.name))
        if entry.get(b"process", b"") == b"web"
    ]
    resets = sum("ConnectionResetError" in line for line in lines)
    print(
        f"\ndeploys: {DEPLOYS}, requests: {load.ok + load.failed}, failed: {load.failed}, "
        f"app log lines: {len(lines)}, ConnectionResetError lines: {resets}"
    )
    assert sum("listening" in line for line in lines) >= DEPLOYS, lines[:20]  # the log really was shipped
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert resets == 0, [line for line in lines if "Error" in line][:10]

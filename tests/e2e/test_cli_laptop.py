"""The `berth` command on a teammate's laptop: the one file the dashboard serves (/cli/berth), run by another Python
than the server's (Debian trixie's 3.13 in a container made from the trixie stack image, sharing the host's
network), logs in, pushes with git through its credential helper and follows the app's logs."""

import hashlib
import io
import subprocess
import tarfile
import time

import httpx
import pytest

from tests.conftest import REPO_DIR, wait_for, write_hello_app
from tests.e2e.test_push_to_live import get, git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

LAPTOP_DOCKERFILE = """\
FROM berth/stack:trixie
RUN apt-get update -q && apt-get install -y -q --no-install-recommends git && rm -rf /var/lib/apt/lists/*
"""


@pytest.fixture(scope="module")
def laptop_image():
    """berth/stack:trixie with git: Python 3.13 (the server runs bookworm's 3.11). Made once per machine."""
    from berth.runtime.client import docker_client

    client = docker_client(timeout=600)
    tag = "berth-test/laptop:" + hashlib.sha256(LAPTOP_DOCKERFILE.encode()).hexdigest()[:12]
    try:
        client.images.get(tag)
        return tag
    except Exception:  # noqa: BLE001 - not made yet
        pass
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = LAPTOP_DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, network_mode="host")
    return tag


def test_the_downloaded_cli_logs_in_pushes_and_follows_logs_on_another_python(
    tmp_path, tenant, berth_platform, laptop_image
):
    download = httpx.get(f"{berth_platform.web_url}/cli/berth", timeout=60)
    assert download.status_code == 200 and download.content.startswith(b"#!/usr/bin/env python3\n")
    cli = tmp_path / "berth"
    cli.write_bytes(download.content)
    cli.chmod(0o755)
    source = tmp_path / "src"
    source.mkdir()
    write_hello_app(source, "from the laptop", loud=True)  # a log line per request
    for args in (("init", "-q", "-b", "main"), ("add", "-A")):
        git(source, *args)
    git(source, "-c", "user.email=dev@example.test", "-c", "user.name=dev", "commit", "-q", "-m", "first")
    app, host = tenant.app.name, f"{tenant.app.name}.localhost"
    script = f"""
set -e
python3 --version
berth login --url {berth_platform.web_url} --username dev --password pw-123456
cd /src
git config --global --add safe.directory /src
berth git:remote -a {app}
git push berth main
(timeout 40 berth logs -t -a {app} > /tmp/logs.txt 2>&1 || true) &
sleep 8
python3 -c 'import urllib.request as u; print(u.urlopen(u.Request("http://127.0.0.1:{berth_platform.router_port}/", headers={{"Host": "{host}"}})).read().decode())'
for i in $(seq 30); do grep -q 'served /' /tmp/logs.txt && break; sleep 1; done
cat /tmp/logs.txt
"""
    # the log shipper (make up runs it beside the web process; the e2e platform does not): this app's containers
    shipper = subprocess.Popen(
        [str(REPO_DIR / ".venv/bin/python"), "manage.py", "ship_logs", "--no-metrics", "--scan-interval", "1",
         "--only-label", f"org.berth.app={app}"],
        cwd=REPO_DIR, env=berth_platform.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    try:
        run = subprocess.run(
            [
                "docker", "run", "--rm", "--network", "host", "-e", "HOME=/root",
                "-v", f"{cli}:/usr/local/bin/berth:ro", "-v", f"{source}:/src",
                laptop_image, "bash", "-c", script,
            ],
            capture_output=True,
            text=True,
            timeout=400,
        )  # fmt: skip
    finally:
        shipper.terminate()
        shipper.wait(timeout=30)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Python 3.13" in output
    assert "remote: -----> Build" in output and "deployed to Berth" in output
    assert "from the laptop" in output  # the app answered the request the container made
    assert "served /" in output, output  # …and `berth logs -t` on that Python showed its log line
    wait_for(lambda: get(berth_platform.router_port, host).text.strip() == "from the laptop", timeout=30)
    print(f"\nthe laptop's login, push and logs took {time.monotonic() - started:.0f}s")

"""Helpers shared by the builds end-to-end tests (test_builds_*.py): git work trees pushing to the platform, the
API, waiting on builds, a local image registry. No tests here; the fixtures are imported by the test modules."""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import httpx
import pytest

from tests.conftest import FIXTURE_APPS, free_port, wait_for

# A Dockerfile app whose one RUN step takes `seconds` (printing as it goes): a build that is surely running
# when a test cancels it, kills its worker or disconnects its pusher. The step's output is unique per commit,
# so the engine's cache never skips it.
SLOW_DOCKERFILE = """\
FROM berth/stack:bookworm
RUN for i in $(seq {seconds}); do echo "slow step $i ({nonce})"; sleep 1; done
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""


def keep_transcript(name: str, text: str) -> None:
    """Write a transcript under BERTH_TRANSCRIPTS_DIR when set (for a report); nothing otherwise."""
    directory = os.environ.get("BERTH_TRANSCRIPTS_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.txt").write_text(text)


class Repo:
    """A work tree whose remote `berth` is an app's repository on the platform (token as the password)."""

    def __init__(self, path: Path, *, web_url: str, app: str, token: str, branch: str = "main"):
        self.path = path
        self.app = app
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)
        self.git("config", "user.email", "dev@example.test")
        self.git("config", "user.name", "dev")
        self.url = web_url.replace("http://", f"http://git:{token}@") + f"/git/{app}.git"
        self.git("remote", "add", "berth", self.url)

    def git(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, timeout=timeout, check=check
        )

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def remove(self, *names: str) -> None:
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    def copy_fixture(self, name: str) -> None:
        shutil.copytree(FIXTURE_APPS / name, self.path, dirs_exist_ok=True)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).stdout.strip()

    def push(self, *refspecs: str, force: bool = False) -> subprocess.CompletedProcess:
        args = ["push", *(["--force"] if force else []), "berth", *(refspecs or ("main",))]
        return self.git(*args, check=False)

    def push_in_background(self, *refspecs: str) -> "BackgroundPush":
        """A push whose output a test reads while it runs."""
        return BackgroundPush(["git", "push", "berth", *(refspecs or ("main",))], cwd=self.path)

    def remote_head(self, branch: str = "main") -> str | None:
        out = self.git("ls-remote", "berth", f"refs/heads/{branch}").stdout.split()
        return out[0] if out else None


APP_PREFIX = "t-bld-"


def _remove_app_workloads(client, wanted) -> None:
    for service in client.services.list(filters={"label": "org.berth.app"}):
        if wanted(
            service.attrs["Spec"]["Labels"].get("org.berth.app", ""), service.attrs.get("CreatedAt", "")
        ):
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
    # the engine's list as it answers it: the SDK's containers.list() inspects each one after, and one another
    # test removed in between failed this fixture (NotFound)
    for container in client.api.containers(all=True, filters={"label": "org.berth.app"}):
        created = datetime.fromtimestamp(container["Created"], UTC).isoformat()
        if wanted((container.get("Labels") or {}).get("org.berth.app", ""), created):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                client.api.remove_container(container["Id"], force=True)


@pytest.fixture
def app_name(tenant) -> str:
    """An app of the tenant's team named t-bld-<random>, whose services this fixture removes at the end.

    Not t-e2e-*: every other end-to-end run on this machine removes all t-e2e-* services when it starts, which
    would pull a running app from under these tests. Leftovers of killed runs (over two hours old) go at start."""
    from berth.apps.services import app_create
    from berth.runtime.client import docker_client

    client = docker_client()
    stale = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    _remove_app_workloads(
        client, lambda app, created: app.startswith(APP_PREFIX) and created[:19] < stale[:19]
    )
    name = APP_PREFIX + secrets.token_hex(4)
    app_create(team=tenant.team, name=name, actor=tenant.user)
    yield name
    _remove_app_workloads(client, lambda app, created: app == name)
    for image in client.images.list(name=f"berth/{name}"):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=True)


def make_repo(tmp_path: Path, berth_platform, tenant, app: str, name: str = "src", **kwargs) -> Repo:
    return Repo(
        tmp_path / name,
        web_url=berth_platform.web_url,
        app=app,
        token=kwargs.pop("token", tenant.token),
        **kwargs,
    )


@pytest.fixture
def repo(tmp_path, berth_platform, tenant, app_name) -> Repo:
    return make_repo(tmp_path, berth_platform, tenant, app_name)


@pytest.fixture
def api(berth_platform, tenant):
    with httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    ) as client:
        yield client


def get_app_page(router_port: int, app: str, path: str = "/") -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{router_port}{path}", headers={"Host": f"{app}.localhost"}, timeout=10
    )


def wait_build(api: httpx.Client, app: str, build_id: int, *, timeout: float = 300, statuses=None) -> dict:
    """The build once it reaches one of `statuses` (default: any finished status)."""
    wanted = statuses or ("succeeded", "failed", "cancelled")

    def reached():
        build = api.get(f"/apps/{app}/builds/{build_id}").json()
        return build if build["status"] in wanted else None

    return wait_for(
        reached, timeout=timeout, interval=0.5, message=f"build {build_id} to be {'/'.join(wanted)}"
    )


def wait_running_build(api: httpx.Client, app: str, *, timeout: float = 120, after: int = 0) -> dict:
    """The app's newest build with an id above `after` once it is building (its worker has started it)."""

    def running():
        for build in api.get(f"/apps/{app}/builds").json():
            if build["id"] > after and build["status"] == "building":
                return build
        return None

    return wait_for(running, timeout=timeout, interval=0.2, message=f"a running build of {app}")


class BackgroundPush:
    """A git client running in its own process group, its merged output collected line by line by a thread."""

    def __init__(self, command: list[str], *, cwd: Path):
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a test can kill the client with its helpers (git-remote-http)
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_line(self, needle: str, *, timeout: float) -> int:
        """The index of the first line holding `needle`, waiting for it at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, line in enumerate(list(self.lines)):
                if needle in line:
                    return index
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line with {needle!r} within {timeout}s; saw: {self.lines[-20:]}")

    def finish(self, *, timeout: float = 300) -> str:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return "\n".join(self.lines)

    def kill(self) -> None:
        """What a Ctrl-C or a dropped laptop lid does: the client and its helpers are gone at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def platform_pids(berth_platform, program: str) -> list[int]:
    """PIDs of this platform's processes running `program` (found by their BERTH_HOME, not by name alone)."""
    pids = []
    marker = f"BERTH_HOME={berth_platform.home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if program.encode() in cmdline and marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def build_worker_pid(api: httpx.Client, app: str, build_id: int) -> int:
    """The PID of the Celery pool process running build `build_id`, as the build records it (host:pid)."""
    worker = api.get(f"/apps/{app}/builds/{build_id}").json()["worker"]
    host, _, pid = worker.rpartition(":")
    assert host and pid.isdigit(), worker
    return int(pid)


@pytest.fixture
def local_registry(tmp_path):
    """Debian's docker-registry on a free loopback port with its own config and storage; stopped by PID.

    The engine treats registries on 127.0.0.0/8 as insecure-allowed, so no TLS is needed."""
    port = free_port()
    storage = tmp_path / "registry"
    storage.mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=20, message="the local registry")
        yield SimpleNamespace(
            host=f"127.0.0.1:{port}", port=port, process=process, log=tmp_path / "registry.log"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

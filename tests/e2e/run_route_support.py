"""Helpers of the run-and-route end-to-end tests: a small app pushed with `git push`, the API, the router's view."""

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import NO_TLS, hello_app, wait_for


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300, check=check)


def make_repo(path: Path, *, web_url: str, token: str, app: str) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.test")
    git(path, "config", "user.name", "dev")
    git(
        path, "remote", "add", "berth", web_url.replace("http://", f"http://git:{token}@") + f"/git/{app}.git"
    )
    return path


def push(
    repo: Path,
    message: str,
    *,
    mode: str = "",
    procfile: str | None = "web: python app.py\n",
    files: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Write the app (or `files` instead), commit and `git push berth main`; the push waits for the roll-out."""
    for old in repo.iterdir():
        if old.name != ".git":
            old.unlink()
    if files is None:
        files = {"requirements.txt": "", "app.py": hello_app(message, mode=mode)}
        if procfile is not None:
            files["Procfile"] = procfile
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "push", "berth", "main", check=False)


def push_ok(repo: Path, message: str, **kwargs) -> subprocess.CompletedProcess:
    result = push(repo, message, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def get(router_port: int, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{router_port}{path}", headers={"Host": host}, timeout=10, verify=NO_TLS
    )


def body_of(router_port: int, host: str) -> str | None:
    try:
        response = get(router_port, host)
    except httpx.HTTPError:
        return None
    return response.text.strip() if response.status_code == 200 else None


def api(berth_platform, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=berth_platform.web_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def routed(app: str) -> list[tuple[str, int, str]]:
    """The app's endpoints as the real router has them: [(address, port, status)]."""
    from berth.routing.haproxy_router import HaproxyRouter

    return HaproxyRouter().state().get(app, {}).get("endpoints", [])


def web_services(app: str) -> list:
    from berth.runtime.scheduler import get_scheduler

    return [s for s in get_scheduler().services(app=app) if s.process == "web"]


def running_web_ports(app: str) -> set[int]:
    from berth.runtime.scheduler import get_scheduler

    return {t.published_port for t in get_scheduler().tasks(app=app, process="web") if t.running}


def wait_release(app, version: int, status: str = "live", timeout: float = 120) -> None:
    from berth.releases.models import Release

    def reached():
        release = Release.objects.filter(app=app, version=version).first()
        if release and release.status == "failed" and status != "failed":
            raise AssertionError(f"v{version} failed: {release.status_reason}")
        return release is not None and release.status == status

    wait_for(reached, timeout=timeout, interval=0.25, message=f"v{version} {status}")


def events(app: str) -> list[dict]:
    import redis
    from berth.observe.services import events_key
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return [fields for _id, fields in client.xrange(events_key(app))]


def timed(fn, *args, **kwargs) -> SimpleNamespace:
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return SimpleNamespace(result=result, seconds=time.monotonic() - started)


def wait_containers_gone(names: set[str], timeout: float = 60) -> None:
    """Wait (bounded) until Swarm has removed the containers of the apps `names`: the next test's clean-up lists
    containers and would race the ones still going away."""
    from berth.runtime.client import docker_client

    client = docker_client()

    def gone() -> bool:
        # the plain list: no per-container inspect, which fails for a container removed meanwhile
        containers = client.api.containers(all=True, filters={"label": "org.berth.app"})
        return not any((c.get("Labels") or {}).get("org.berth.app") in names for c in containers)

    deadline = time.monotonic() + timeout
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.25)


def remove_test_apps() -> None:
    """Remove the services of this test's apps (those in its database), wait for their containers, untag their
    images. Only this test's: the engine also runs the t-e2e-* apps of tests running beside it (the other xdist
    worker, another checkout's run), and removing every t-e2e-* app pulled their services from under them (a deploy
    told that its new release's service "does not exist", the live release gone with it)."""
    from berth.apps.models import App
    from berth.runtime.scheduler import get_scheduler

    names = set(App.objects.values_list("name", flat=True))
    for name in sorted(names):
        try:
            get_scheduler().remove(app=name)
        except Exception:  # the platform's own clean-up still runs after this
            pass
    wait_containers_gone(names)
    remove_app_images()


@pytest.fixture(autouse=True)
def _settled_containers(berth_platform):
    """Remove the test's apps' services and wait for their containers before the platform stops: its clean-up
    lists containers one by one and fails on one that Swarm removes meanwhile."""
    yield
    remove_test_apps()


def remove_app_images() -> None:
    """Untag the images the test's builds made (berth/<app>:build-N); shared layers stay as the build cache."""
    import docker.errors
    from berth.apps.models import App
    from berth.runtime.client import docker_client

    client = docker_client()
    for name in App.objects.values_list("name", flat=True):
        for image in client.api.images(name=f"berth/{name}"):
            for tag in image.get("RepoTags") or []:
                try:
                    client.api.remove_image(tag)
                except docker.errors.APIError:
                    pass  # still used by a container that is going away; the next run's clean-up is not ours

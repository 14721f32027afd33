"""The whole platform for end-to-end tests: a real router (HAProxy), web (gunicorn + uvicorn), a Celery worker,
all against the test database, Redis, Docker and the swarm. Nothing is mocked."""

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis

from tests.conftest import NO_TLS, REPO_DIR, free_port, wait_for
from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support import forkserver
from tests.support.forkserver import Forked

APP_PREFIX = "t-e2e-"
# the apps the end-to-end tests name, and the buildpack cache tests' (tests/buildpacks/test_build_cache.py)
LEFTOVER_PREFIXES = (APP_PREFIX, "t-bp-")
# no end-to-end test runs this long: older t-e2e-* services are an earlier (killed) run's leftovers
LEFTOVER_AGE = 3600


def remove_leftover_services(
    prefix: str | tuple[str, ...] = APP_PREFIX, *, names: set[str] | None = None, older_than: float = 0
) -> None:
    """Remove t-e2e-* services and containers: only those of `names` when given, and only those created more
    than `older_than` seconds ago (so a starting test does not tear down the apps of another one running now)."""
    import docker
    from berth.runtime.client import docker_client

    client = docker_client()
    cutoff = time.time() - older_than

    def ours(app: str, created: float) -> bool:
        if not app.startswith(prefix) or (names is not None and app not in names):
            return False
        return not older_than or created < cutoff

    for service in client.services.list(filters={"label": "org.berth.app"}):
        if ours(
            service.attrs["Spec"]["Labels"].get("org.berth.app", ""), _timestamp(service.attrs["CreatedAt"])
        ):
            try:
                service.remove()
            except docker.errors.NotFound:
                pass  # removed meanwhile (its own test finishing)
    # the plain list (its "Created" in seconds): containers.list inspects each container, and fails on one that
    # Swarm or another test's clean-up removes meanwhile (a test's setup failed so once)
    for container in client.api.containers(all=True, filters={"label": "org.berth.app"}):
        if ours((container.get("Labels") or {}).get("org.berth.app", ""), container["Created"]):
            try:
                client.api.remove_container(container["Id"], force=True)
            except docker.errors.APIError:
                pass  # already gone, or its removal is in progress


def image_app(image: dict) -> str:
    """The app an image (an entry of the engine's image list) is of: its tags' or its build stage's repository
    (berth/<app>:tag, 127.0.0.1:5000/<app>:tag), else the app label a build gives it; "" for none."""
    from berth.builds.builder import CACHE_STAGE_LABEL, RUN_STAGE_LABEL
    from berth.builds.images import APP_LABEL

    labels = image.get("Labels") or {}
    stages = [labels.get(CACHE_STAGE_LABEL), labels.get(RUN_STAGE_LABEL)]
    for ref in (image.get("RepoTags") or []) + stages:
        if ref and ref != "<none>:<none>":
            return ref.rpartition(":")[0].rpartition("/")[2]
    return labels.get(APP_LABEL, "")


def remove_leftover_images(
    prefix: str | tuple[str, ...] = APP_PREFIX, *, names: set[str] | None = None, older_than: float = 0
) -> None:
    """Remove the images of t-e2e-* apps (their builds, release images tagged for a registry, cache stages left
    untagged): only those of `names` when given, only those created more than `older_than` seconds ago. Each run
    builds hundreds; left behind, they fill the disk CI runs on next."""
    import docker
    from berth.runtime.client import docker_client

    client = docker_client(timeout=300)
    cutoff = time.time() - older_than

    def ours(image: dict) -> bool:
        app = image_app(image)
        if not app.startswith(prefix) or (names is not None and app not in names):
            return False
        return not older_than or image["Created"] < cutoff

    # newest first: an image built on another goes before it (the engine refuses a parent with children)
    for image in sorted(client.api.images(), key=lambda i: i["Created"], reverse=True):
        if ours(image):
            try:
                client.api.remove_image(image["Id"], force=True)
            except docker.errors.APIError:
                pass  # a parent of another image, or removed meanwhile


def _timestamp(docker_time: str) -> float:
    # Docker's RFC 3339 times carry nanoseconds; seconds are all a cut-off needs
    return datetime.fromisoformat(docker_time[:19]).replace(tzinfo=UTC).timestamp()


def _start(name: str, command: list[str], env: dict, logs: Path) -> Forked:
    # forked from this test process's fork server (tests/support/forkserver.py: the libraries imported once, ~2 s of
    # CPU less for each platform started, ~100 a run), in a session of its own: teardown ends its whole process
    # group (a gunicorn worker outliving its master would keep the test database open)
    return forkserver.shared().spawn(command, env=env, log=logs / f"{name}.log")


@pytest.fixture
def platform_env() -> dict:
    """Environment overrides for the platform's processes (e.g. REDIS_URL of a Redis a test may restart).

    Override this fixture in a test module to point the platform elsewhere."""
    return {}


# The platform's processes: web (gunicorn + uvicorn, as deploy/Procfile), worker (Celery), watcher (routes).
PLATFORM_PROCESSES = ("web", "worker", "watcher")


@pytest.fixture
def platform_processes() -> tuple[str, ...]:
    """Which of PLATFORM_PROCESSES berth_platform starts: all of them. A module whose tests only speak to the web
    process (its doors, its caps, its sign-in) overrides it with ("web",): a worker and a watcher cost ~3 s of CPU
    to start, for each test."""
    return PLATFORM_PROCESSES


PLATFORM_LOG_LINES = 40  # of each process's log, printed under a failed test (its tmp_path goes after 3 runs)


@pytest.fixture(scope="session")
def leftovers_swept() -> None:
    """An earlier, killed run's apps and images removed, once per test process: before each test, the engine's
    listing of every image (~0.3-1.3 s of its CPU with a few hundred) was paid ~100 times a run for what only a
    run's start can find. Only those older than LEFTOVER_AGE: other engineers' tests may be running right now."""
    remove_leftover_services(LEFTOVER_PREFIXES, older_than=LEFTOVER_AGE)
    remove_leftover_images(LEFTOVER_PREFIXES, older_than=LEFTOVER_AGE)


@pytest.fixture
def berth_platform(
    leftovers_swept,
    transactional_db,
    router,
    tmp_path,
    settings,
    platform_env,
    platform_processes,
    request,
):
    """Start web and worker processes for this test's database; stop them by PID afterwards. When the test
    failed, the end of each process's log is printed with it (a failure under load seen once is read there)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("end-to-end tests share the database with other processes: PostgreSQL only")
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    home = tmp_path / "home"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    web_port = free_port()
    if "REDIS_URL" in platform_env:
        settings.REDIS_URL = platform_env["REDIS_URL"]  # the test process reads build streams from it too
    # tasks queued by earlier tests name rows of their own (flushed) database: start from an empty queue
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    settings.BERTH_HOME = home  # shared with the platform: repos, pushed trees, the config encryption key
    settings.BERTH_HTTP_PORT = router.port
    env = {
        **os.environ,
        "BERTH_HOME": str(home),
        "DATABASE_URL": database_url,
        "BERTH_ROUTER_DIR": str(router.paths.directory),
        "BERTH_ROUTER_ADMIN_SOCKET": str(settings.BERTH_ROUTER_ADMIN_SOCKET),
        "BERTH_HTTP_PORT": str(router.port),
        "BERTH_WEB_PORT": str(web_port),
        "PYTHONPATH": str(REPO_DIR / "platform"),
        # no registry unless a test asks for one (berth_registry): images stay local, as on one node
        "BERTH_REGISTRY": "",
        **platform_env,
    }
    venv = REPO_DIR / ".venv/bin"
    commands = {
        "web": [
            str(venv / "gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "berth.config.worker.BerthUvicornWorker",
            "-b",
            f"127.0.0.1:{web_port}",
            "-w",
            "2",
            "--preload",  # as deploy/Procfile: Django imported once, the workers forked from it
            "--timeout",
            "0",
        ],
        "worker": [
            str(venv / "celery"),
            "-A",
            "berth.config",
            "worker",
            "-Q",
            "default,builds,deploys,previews",
            # as deploy/Procfile: a process forked for each task that finds none idle, the last one ending once
            # the pool is idle (berth.config.autoscaler); at most 3 here. A fixed pool of 3 cost ~0.6 s more CPU to
            # start and stop, for each of the ~80 tests that start the whole platform.
            "--autoscale",
            "3,0",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
        ],
        "watcher": [str(venv / "python"), "manage.py", "watch"],
    }
    # by name, so a fault test can kill one (its PID) and start it again like a supervisor would
    processes = {name: _start(name, commands[name], env, logs) for name in platform_processes}

    def start(name: str) -> Forked:
        log_name = f"{name}-{sum(1 for _ in logs.glob(name + '*.log'))}"
        processes[name] = _start(log_name, commands[name], env, logs)
        return processes[name]

    def web_up():
        try:
            return httpx.get(
                f"http://127.0.0.1:{web_port}/healthz", timeout=2, verify=NO_TLS
            ).status_code in (200, 503)
        except httpx.TransportError:
            return False

    try:
        wait_for(web_up, timeout=30, message="the web process")
        yield SimpleNamespace(
            web_url=f"http://127.0.0.1:{web_port}",
            router_port=router.port,
            home=home,
            logs=logs,
            env=env,
            processes=processes,
            start=start,
        )
    finally:
        for name, process in processes.items():
            if name == "worker" and _leads_its_group(process.pid):
                # killed, not stopped: Celery's warm shutdown took 1.3-1.6 s after SIGTERM (the web and the
                # watcher ~0.3 s), the longest part of each end-to-end test's teardown; the test is over, and
                # what a worker killed mid-task leaves is the fault tests' subject (test_faults_worker.py). Not
                # a worker a test runs under deploy/respawn.sh in the test's own group: stopped, it stops the worker
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            else:
                process.terminate()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for log in sorted(logs.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-PLATFORM_LOG_LINES:]
                print(f"--- the last {len(lines)} lines of {log.name} ---", *lines, sep="\n")
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for process in processes.values():
            try:
                os.killpg(
                    process.pid, signal.SIGKILL
                )  # what is left of the group: only ours, by its leader's PID
            except (ProcessLookupError, PermissionError):
                pass
        from berth.apps.models import App

        apps = set(App.objects.values_list("name", flat=True))
        remove_leftover_services(names=apps)
        remove_leftover_images(names=apps)


def _leads_its_group(pid: int) -> bool:
    """Whether `pid` is its process group's leader (the fork server starts each platform process so)."""
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


@pytest.fixture(scope="session")
def berth_registry(tmp_path_factory):
    """Berth's private registry as `manage.py registry_run` makes it (docker-registry, htpasswd auth, deletes on)
    on a free loopback port (Docker trusts 127.0.0.0/8 without TLS), for the session; stopped by PID.

    `.env` is what a test's `platform_env` passes so the platform pushes there (BERTH_REGISTRY and friends)."""
    from berth.runtime import registry

    directory = tmp_path_factory.mktemp("berth-registry")
    listen = f"127.0.0.1:{free_port()}"
    user, password = "berth", secrets.token_urlsafe(16)
    config = registry.registry_config_write(directory=directory, listen=listen, users={user: password})
    log = open(directory / "registry.log", "wb")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(registry.registry_command(config), stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            return httpx.get(f"http://{listen}/v2/", timeout=2).status_code == 401  # up, asking for a login
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=20, message="the registry")
        yield SimpleNamespace(
            address=listen,
            directory=directory,
            data=directory / "data",
            config=config,
            user=user,
            password=password,
            process=process,
            log=directory / "registry.log",
            env={
                "BERTH_REGISTRY": listen,
                "BERTH_REGISTRY_DIR": str(directory),
                "BERTH_REGISTRY_USER": user,
                "BERTH_REGISTRY_PASSWORD": password,
            },
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def tenant(berth_platform):
    """A user with a team, an API token and an app named t-e2e-<random>."""
    from berth.accounts.services import team_create, token_create
    from berth.apps.services import app_create
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username="dev", email="dev@example.test", password="pw-123456"
    )
    team = team_create(name="devs", actor=user)
    _, clear = token_create(user=user, name="e2e")
    app = app_create(team=team, name=APP_PREFIX + secrets.token_hex(3), actor=user)
    return SimpleNamespace(user=user, team=team, token=clear, app=app)


@pytest.fixture
def repo(tmp_path, tenant, berth_platform) -> Path:
    """An empty git repository on `main` whose `berth` remote is the tenant's app (token in the URL)."""
    path = tmp_path / "src"
    path.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "dev@example.test"],
        ["config", "user.name", "dev"],
        [
            "remote",
            "add",
            "berth",
            berth_platform.web_url.replace("http://", f"http://git:{tenant.token}@")
            + f"/git/{tenant.app.name}.git",
        ],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture
def page(berth_platform, tenant):
    """A real browser (Debian's chromium through Playwright) signed in as the tenant's user on the running platform.
    Confirm dialogs are accepted; any JavaScript error on the page fails the test."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    # Playwright's sync API keeps an event loop in this thread; the fixtures' ORM calls beside it are plain sync code
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    errors: list[str] = []
    try:
        with playwright_sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(
                base_url=berth_platform.web_url, viewport={"width": 1280, "height": 900}
            )
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto("/login/")
            page.fill("#id_username", "dev")
            page.fill("#id_password", "pw-123456")
            page.click("#login-submit")
            page.wait_for_url(re.compile(r".*/apps/$"))
            yield page
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
    assert errors == [], f"JavaScript errors: {errors}"

"""The whole platform for the deploy benchmarks, started the way tests/e2e/conftest.py starts it: a real HAProxy
router, gunicorn+uvicorn web, a Celery worker and the watcher, on a fresh PostgreSQL database of the test cluster
(127.0.0.1:54329, database berth_bench_deploy, dropped and re-created) and Redis database 14 (flushed).

Import it first: it sets the environment Django reads. `with Platform() as platform:` starts everything, gives a
tenant (user, team, token, app bench-<random>) and `push(message)`; on exit it stops the processes by PID and
removes the app's services and the router.
"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]

DB_ADMIN_URL = "postgres://postgres@127.0.0.1:54329/postgres"
DB_NAME = "berth_bench_deploy"
HOME = Path(tempfile.mkdtemp(prefix="berth-bench-deploy-"))
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "berth.config.settings",
        "BERTH_SECRET_KEY": "bench",
        "BERTH_HOME": str(HOME / "home"),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:54329/{DB_NAME}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "BERTH_ROUTER_DIR": str(HOME / "router"),
        "BERTH_ROUTER_ADMIN_SOCKET": str(HOME / "router" / "admin.sock"),
    }
)
(HOME / "home").mkdir()

from common import APP_PY  # noqa: E402  (the tiny app every deploy benchmark pushes)

from tests.conftest import free_port, wait_for  # noqa: E402

APP_PREFIX = "bench-"
TEAM = "bench"  # a benchmark running beside another (another installation id) sets a team of its own
PUSH_TIMEOUT_S = 300  # a push here takes 10-70 s; one that hangs is a failed deploy, not a hung benchmark
VENV = REPO / ".venv/bin"


def _fresh_database() -> None:
    _drop_database()
    import psycopg

    with psycopg.connect(DB_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{DB_NAME}"')


def _drop_database() -> None:
    import psycopg

    with psycopg.connect(DB_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def remove_services(prefix: str | None = None) -> None:
    # read now: a benchmark may set its own prefix after importing this module
    prefix = prefix or APP_PREFIX
    from berth.runtime.client import docker_client

    client = docker_client()
    for service in client.services.list(filters={"label": "org.berth.app"}):
        if service.attrs["Spec"]["Labels"].get("org.berth.app", "").startswith(prefix):
            service.remove()


class Platform:
    def __init__(
        self,
        *,
        http_port: int | None = None,
        shipper: bool = False,
        beat: bool = False,
        daemons: bool = False,
    ):
        self.http_port = http_port or free_port()
        # the watcher, the shipper and beat as deploy/Procfile runs them: one `daemons` process
        self.daemons = daemons
        self.shipper = (
            shipper  # the log shipper too (logs, health, the metrics history), as `make up` runs it
        )
        self.beat = beat  # and Celery's beat (the sweeps, the cron tick), as deploy/Procfile runs it
        self.web_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.extra_apps: list[str] = []
        self.failed = False  # a push failed: the process logs are kept in bench/results
        self.logs = HOME / "logs"
        self.logs.mkdir(exist_ok=True)

    def __enter__(self) -> "Platform":
        _fresh_database()
        import django

        os.environ["BERTH_HTTP_PORT"] = str(self.http_port)
        django.setup()
        import logging

        import redis
        from django.conf import settings
        from django.core.management import call_command

        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the tables
        call_command("migrate", verbosity=0)
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
        remove_services()
        from berth.routing.haproxy import haproxy_command, write_config

        paths = write_config(http_port=self.http_port)
        self._start("router", haproxy_command(paths))
        wait_for(lambda: settings.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket")
        env = {**os.environ, "BERTH_WEB_PORT": str(self.web_port), "PYTHONPATH": str(REPO / "platform")}
        gunicorn = [str(VENV / "gunicorn"), "berth.config.asgi:application", "-k", "uvicorn.workers.UvicornWorker",
                    "-b", f"127.0.0.1:{self.web_port}", "-w", "2", "--preload", "--timeout", "0"]  # fmt: skip
        # the pool as deploy/Procfile sizes it: it grows with the builds queued (a build mostly waits on Docker)
        worker = [str(VENV / "celery"), "-A", "berth.config", "worker", "-Q", "default,builds,deploys,previews",
                  "--autoscale", "10,0",
                  "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "INFO"]  # fmt: skip
        self._start("web", gunicorn, env)
        self._start("worker", worker, env)
        if self.daemons:
            daemons = [
                str(VENV / "python"),
                "manage.py",
                "daemons",
                "--schedule",
                str(HOME / "celerybeat-schedule"),
            ]
            self._start("daemons", daemons, env)
        else:
            self._start("watcher", [str(VENV / "python"), "manage.py", "watch"], env)
        if self.shipper and not self.daemons:
            self._start("shipper", [str(VENV / "python"), "manage.py", "ship_logs"], env)
        if self.beat and not self.daemons:
            beat = [str(VENV / "celery"), "-A", "berth.config.beat", "beat", "--loglevel", "INFO",
                    "--schedule", str(HOME / "celerybeat-schedule")]  # fmt: skip
            self._start("beat", beat, env)
        import httpx

        def web_up():
            try:
                return httpx.get(f"http://127.0.0.1:{self.web_port}/healthz", timeout=2).status_code in (
                    200,
                    503,
                )
            except httpx.TransportError:
                return False

        wait_for(web_up, timeout=30, message="the web process")
        self._tenant()
        return self

    def _start(self, name: str, command: list[str], env: dict | None = None) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=env or os.environ, stdout=log, stderr=subprocess.STDOUT
        )

    def _tenant(self) -> None:
        from berth.accounts.services import team_create, token_create
        from berth.apps.services import app_create
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(
            username="bench", email="bench@example.test", password="x"
        )
        team = team_create(name=TEAM, actor=user)
        self.user, self.team = user, team
        _, self.token = token_create(user=user, name="bench")
        self.app = app_create(team=team, name=APP_PREFIX + secrets.token_hex(3), actor=user)
        self.host = f"{self.app.name}.localhost"
        self.repo = HOME / "src"
        self.repo.mkdir()
        self._git("init", "-q", "-b", "main")
        self._git("config", "user.email", "bench@example.test")
        self._git("config", "user.name", "bench")
        url = f"http://git:{self.token}@127.0.0.1:{self.web_port}/git/{self.app.name}.git"
        self._git("remote", "add", "berth", url)

    def _git(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=self.repo, capture_output=True, text=True, timeout=timeout, check=check
        )

    def push(self, message: str) -> subprocess.CompletedProcess:
        (self.repo / "requirements.txt").write_text("")
        (self.repo / "Procfile").write_text("web: python app.py\n")
        (self.repo / "app.py").write_text(APP_PY.format(message=message))
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        try:
            result = self._git("push", "berth", "main", check=False, timeout=PUSH_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:  # a failed deploy like any other, with what it printed
            printed = (
                error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
            )
            result = subprocess.CompletedProcess(
                error.cmd, -1, "", f"{printed or ''}\n(no answer in {PUSH_TIMEOUT_S} s)"
            )
        self.failed |= result.returncode != 0
        return result

    def api(self):
        import httpx

        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.web_port}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def source(self, app_name: str) -> "Source":
        """A git work tree pushing to another app of the bench team (made with `app_create`)."""
        source = Source(
            HOME / "src-apps" / app_name,
            f"http://git:{self.token}@127.0.0.1:{self.web_port}/git/{app_name}.git",
        )
        self.extra_apps.append(app_name)
        return source

    def _remove_images_and_network(self) -> None:
        import docker.errors
        from berth.runtime.client import docker_client
        from berth.runtime.swarm import team_network_remove

        client = docker_client()
        app = getattr(self, "app", None)
        names = ([app.name] if app is not None else []) + self.extra_apps
        for name in names:
            from berth.runtime.scheduler import get_scheduler

            get_scheduler().remove(
                app=name
            )  # waits until the containers are gone: they hold image and network
            for image in client.api.images(name=f"berth/{name}"):
                for tag in image.get("RepoTags") or []:
                    try:
                        client.api.remove_image(tag)
                    except docker.errors.APIError:
                        pass
        try:
            team_network_remove(team=TEAM)
        except docker.errors.APIError:
            pass  # still in use by another benchmark's apps of the same team name

    def __exit__(self, *exc) -> None:
        if exc[0] is not None or self.failed:
            kept = REPO / "bench" / "results" / f"{Path(sys.argv[0]).stem}-logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(self.logs, kept)
            print(f"the platform's logs: {kept}", file=sys.stderr)
        for name, process in self.processes.items():
            if name != "router":  # last: the services are removed first
                process.terminate()
        for name, process in self.processes.items():
            if name == "router":
                continue
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            remove_services()
        finally:  # the router stops even when the engine does not answer
            router = self.processes.get("router")
            if router is not None:
                router.terminate()
                try:
                    router.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    router.kill()
        self._remove_images_and_network()
        from django.db import connections

        connections.close_all()
        if not os.environ.get("BENCH_KEEP"):
            _drop_database()
            shutil.rmtree(HOME, ignore_errors=True)


class Source:
    """A git work tree of the tiny app above, with a `berth` remote."""

    def __init__(self, path: Path, url: str):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "bench@example.test")
        self.git("config", "user.name", "bench")
        self.git("remote", "add", "berth", url)

    def git(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, timeout=timeout, check=check
        )

    def commit(self, message: str) -> None:
        """The app answering `message`, committed (not pushed)."""
        (self.path / "requirements.txt").write_text("")
        (self.path / "Procfile").write_text("web: python app.py\n")
        (self.path / "app.py").write_text(APP_PY.format(message=message))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)


def wait_seconds(predicate, *, timeout: float, interval: float = 0.02) -> float:
    """Seconds until `predicate()` is true (raises after `timeout`)."""
    started = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=interval, message="the condition")
    return time.monotonic() - started

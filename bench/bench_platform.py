"""A whole Berth of a benchmark's own on 127.0.0.1: HAProxy (HTTP, and HTTPS when asked) on free ports, gunicorn +
uvicorn, a Celery worker (its pool sized as deploy/Procfile sizes it) and the watcher, against the database and Redis
the benchmark's environment names. Everything it starts it stops by PID. (Not named `platform`: bench/ is on
sys.path, and that name would shadow the standard library's module.)"""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg

from tests.conftest import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
PG = "postgres://postgres@127.0.0.1:54329"


def database(name: str, action: str) -> None:
    """Drop the benchmark's PostgreSQL database, and with action "create" make it again, empty."""
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{name}"')


class Platform:
    """HAProxy, web, worker and watcher for the benchmark's database; stop() ends each by its PID."""

    def __init__(self, work: Path, *, https: bool = False):
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.router_port, self.web_port = free_port(), free_port()
        self.https_port = free_port() if https else None
        self.web_url = f"http://127.0.0.1:{self.web_port}"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        # imported here: django.setup() must have run first, and the benchmark does that after its own settings
        from berth.routing.haproxy import haproxy_command, write_config

        ports = {"http_port": self.router_port}
        env = {**os.environ, **(extra_env or {})}
        env.update(
            BERTH_HTTP_PORT=str(self.router_port),
            BERTH_WEB_PORT=str(self.web_port),
            PYTHONPATH=str(REPO / "platform"),
        )
        if self.https_port is not None:
            ports["https_port"] = self.https_port
            env["BERTH_HTTPS_PORT"] = str(self.https_port)
        self._spawn("router", haproxy_command(write_config(**ports)), env=os.environ)
        subprocess.run(
            [str(VENV / "python"), "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=300
        )
        web = [
            str(VENV / "gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "berth.config.worker.BerthUvicornWorker",
        ]
        web += ["-b", f"127.0.0.1:{self.web_port}", "-w", "2", "--preload", "--timeout", "0"]
        self._spawn("web", web, env=env)
        worker = [
            str(VENV / "celery"),
            "-A",
            "berth.config",
            "worker",
            "-Q",
            "default,builds,deploys,previews",
        ]
        worker += [
            "--autoscale",
            "10,0",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
        ]
        self._spawn("worker", worker, env=env)
        self._spawn("watcher", [str(VENV / "python"), "manage.py", "watch"], env=env)

        def web_up() -> bool:
            try:
                return httpx.get(f"{self.web_url}/healthz", timeout=2).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for(web_up, timeout=60, message="the web process")

    def _spawn(self, name: str, command: list[str], *, env) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def worker_log_tail(self) -> str:
        return (self.logs / "worker.log").read_text(errors="replace")[-3000:]


def remove_apps(names: list[str], *, prefix: str | None = None, team: str = "bench") -> None:
    """The benchmark apps' services (those named, or every app whose name starts with `prefix`: an earlier killed
    run's too), their images and their team's network (this installation's: left behind, it would stop another
    benchmark's team of the same name, under another installation id, from deploying); the platform that would
    tear them down is stopped by then."""
    # imported here: django.setup() must have run first, and the benchmark does that after its own settings
    import docker.errors
    from berth.runtime.client import docker_client
    from berth.runtime.swarm import team_network_remove

    client = docker_client()
    for service in client.services.list(filters={"label": "org.berth.app"}):
        app = service.attrs["Spec"]["Labels"].get("org.berth.app", "")
        if app in names or (prefix and app.startswith(prefix)):
            try:
                service.remove()
            except docker.errors.NotFound:
                pass
    for name in names:
        for image in client.images.list(name=f"berth/{name}"):
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass
    deadline = time.monotonic() + 20
    while True:  # a network goes once the removed services' tasks have left it
        try:
            team_network_remove(team=team, client=client)
            break
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)

"""Helpers for the fault tests: a pushed app, killing a process tree by PID, and a Redis and a PostgreSQL of the
test's own (the machine's shared ones must never be restarted by a test)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import free_port, wait_for
from tests.e2e.test_push_to_live import commit_and_push, get, git


def make_repo(path: Path, *, web_url: str, token: str, app_name: str) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.test")
    git(path, "config", "user.name", "dev")
    git(
        path,
        "remote",
        "add",
        "berth",
        web_url.replace("http://", f"http://git:{token}@") + f"/git/{app_name}.git",
    )
    return path


def api(platform, token: str) -> httpx.Client:
    return httpx.Client(base_url=platform.web_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc, so it works for processes we did not start ourselves)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process we started and all its children (a Celery worker's pool), as an OOM killer would."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)
    for pid in pids[1:]:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=10, message=f"pid {pid} to go")


class OwnRedis:
    """A redis-server on a free loopback port with its own folder; (re)started and stopped by PID."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=open(self.directory / "redis.log", "ab"),  # noqa: SIM115  (closed with the process)
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def up():
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_for(up, timeout=10, message="our redis-server")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's versioned folder (as deploy/test.sh finds it)."""
    found = shutil.which(name)
    if found:
        return found
    folders = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not folders:
        raise RuntimeError("PostgreSQL's server binaries are not installed")
    return str(folders[-1] / name)


class OwnPostgres:
    """A PostgreSQL cluster of our own (run as the postgres user), started and stopped by PID."""

    def __init__(self):
        # not under pytest's tmp_path: that folder is root-only and postgres must not run as root
        self.directory = Path(tempfile.mkdtemp(prefix="berth-faults-pg-", dir="/var/tmp"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        subprocess.run(
            [postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"],
            user="postgres",
            group="postgres",
            capture_output=True,
            check=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                postgres_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.directory),
                "-c",
                "fsync=off",
            ],
            user="postgres",
            group="postgres",
            stdout=open(self.directory / "postgres.log", "ab"),  # noqa: SIM115  (closed with the process)
            stderr=subprocess.STDOUT,
        )

        def up():
            return (
                subprocess.run(
                    [postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
                ).returncode
                == 0
            )

        wait_for(up, timeout=30, message="our postgres")

    def stop(self) -> None:
        # SIGINT: "fast" shutdown, every client connection is cut as when the database host goes away
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def platform_env(own_redis):
    """The platform on a Redis of the test's own: the machine's shared Redis (db 15) is flushed and read by
    other engineers' platform fixtures, whose workers would otherwise take this test's tasks."""
    return {"REDIS_URL": own_redis.url}


def push_live(repo: Path, platform, app_name: str, message: str) -> None:
    pushed = commit_and_push(repo, message)
    assert pushed.returncode == 0, pushed.stderr[-3000:] + (platform.logs / "worker.log").read_text()[-3000:]
    assert get(platform.router_port, f"{app_name}.localhost").text.strip() == message


def app_containers(app_name: str) -> list:
    from berth.runtime.client import docker_client

    return docker_client().containers.list(
        filters={"label": f"org.berth.app={app_name}", "status": "running"}
    )


REPO_DIR = Path(__file__).resolve().parents[2]


def run_respawned(platform, name: str) -> subprocess.Popen:
    """Run the platform's process `name` under deploy/respawn.sh (as deploy/Procfile does): stop the fixture's by
    PID and start the same command under the wrapper, which the fixture then stops by PID like the others."""
    process = platform.processes[name]
    process.terminate()
    process.wait(timeout=30)
    log = open(platform.logs / f"{name}-respawn.log", "ab")  # noqa: SIM115  (closed with the process)
    platform.processes[name] = subprocess.Popen(
        [str(REPO_DIR / "deploy/respawn.sh"), *process.args],
        cwd=REPO_DIR,
        env={**platform.env, "BERTH_RESPAWN_DELAY": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return platform.processes[name]


def respawns(platform, name: str) -> int:
    """How many times deploy/respawn.sh started `name` again (its log says each time)."""
    path = platform.logs / f"{name}-respawn.log"
    return path.read_text(errors="replace").count("respawn: ") if path.exists() else 0


def exited(platform) -> list[str]:
    return [f"{name} (exit {p.returncode})" for name, p in platform.processes.items() if p.poll() is not None]

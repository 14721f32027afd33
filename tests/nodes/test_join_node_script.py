"""deploy/join-node.sh's optional third argument: Berth's registry is listed in the engine's insecure-registries
(it speaks plain HTTP) before Docker is asked anything, keeping what daemon.json already held."""

import json
import subprocess

from tests.conftest import REPO_DIR

TOKEN = "SWMTKN-1-" + "a" * 50


def join(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(REPO_DIR / "deploy/join-node.sh"), *args],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            # the test's own files: never this machine's /etc/docker/daemon.json or its engine
            "BERTH_DOCKER_DAEMON_CONFIG": str(tmp_path / "docker" / "daemon.json"),
            "BERTH_DOCKER_PIDFILE": str(tmp_path / "docker.pid"),
            "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_registry_is_written_to_a_new_daemon_json(tmp_path):
    done = join(tmp_path, "10.0.0.5:2377", TOKEN, "10.0.0.5:5000")
    # it goes on to ask the engine (none here) only after writing the file
    assert "Listing the registry 10.0.0.5:5000" in done.stdout
    assert "the Docker engine does not answer" in done.stderr
    assert json.loads((tmp_path / "docker/daemon.json").read_text()) == {
        "insecure-registries": ["10.0.0.5:5000"]
    }


def test_an_existing_daemon_json_keeps_its_settings_and_is_not_written_twice(tmp_path):
    config = tmp_path / "docker/daemon.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"log-driver": "journald", "insecure-registries": ["10.9.9.9:5000"]}))
    join(tmp_path, "10.0.0.5:2377", TOKEN, "10.0.0.5:5000")
    assert json.loads(config.read_text()) == {
        "log-driver": "journald",
        "insecure-registries": ["10.0.0.5:5000", "10.9.9.9:5000"],
    }
    again = join(tmp_path, "10.0.0.5:2377", TOKEN, "10.0.0.5:5000")
    assert "Listing the registry" not in again.stdout


def test_without_a_registry_daemon_json_is_left_alone_and_a_bad_one_is_refused(tmp_path):
    join(tmp_path, "10.0.0.5:2377", TOKEN)
    assert not (tmp_path / "docker/daemon.json").exists()
    bad = join(tmp_path, "10.0.0.5:2377", TOKEN, "10.0.0.5:5000;reboot")
    assert bad.returncode == 1
    assert "'10.0.0.5:5000;reboot' is not a registry address (host:port)" in bad.stderr
    assert not (tmp_path / "docker/daemon.json").exists()

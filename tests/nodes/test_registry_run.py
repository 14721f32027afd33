"""`manage.py registry_run`, the `registry` process of `make up`: it generates the password once (0600), writes
the config and htpasswd, and runs docker-registry asking for that login; with BERTH_REGISTRY empty it refuses."""

import os
import stat
import subprocess

import httpx

from tests.conftest import REPO_DIR, free_port, manage, wait_for


def test_registry_run_serves_with_a_generated_password_kept_in_berth_home(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    home = tmp_path / "home"
    env = {
        **os.environ,
        "BERTH_HOME": str(home),
        "BERTH_REGISTRY": listen,
        "BERTH_REGISTRY_PASSWORD": "",
        "BERTH_REGISTRY_DIR": "",
        "BERTH_REGISTRY_LISTEN": "",
    }
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115  (closed with the process)
    # manage.py execs docker-registry: this PID is the registry's
    process = subprocess.Popen(
        [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), "registry_run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def answers():
            try:
                return httpx.get(f"http://{listen}/v2/", timeout=1).status_code
            except httpx.TransportError:
                return None

        assert wait_for(answers, timeout=30, message="the registry") == 401
        password_file = home / "registry" / "password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((home / "registry" / "htpasswd").stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 24
        assert httpx.get(f"http://{listen}/v2/", auth=("berth", password), timeout=5).status_code == 200
        assert httpx.get(f"http://{listen}/v2/", auth=("berth", "wrong"), timeout=5).status_code == 401
        assert (home / "registry" / "config.yml").read_text().count(f"addr: {listen}") == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    # the next start keeps the same password (nodes and services hold it)
    done = manage(
        "shell", "-c", "from django.conf import settings; print(settings.BERTH_REGISTRY_PASSWORD)", env=env
    )
    assert done.stdout.strip().splitlines()[-1] == password, done.stderr


def test_registry_run_refuses_when_the_registry_is_off(tmp_path):
    done = manage("registry_run", env={"BERTH_HOME": str(tmp_path), "BERTH_REGISTRY": ""})
    assert done.returncode != 0
    assert "BERTH_REGISTRY is empty: the registry is off" in done.stderr
    assert not (tmp_path / "registry").exists()


def test_a_malformed_registry_address_stops_start_up_naming_it(tmp_path):
    done = manage("check", env={"BERTH_HOME": str(tmp_path), "BERTH_REGISTRY": "http://10.0.0.5:5000/"})
    assert done.returncode != 0
    assert "BERTH_REGISTRY must be host:port" in done.stderr

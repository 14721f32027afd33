"""The control plane destroyed and restored from its archive on the same machine (issue 19's "must show"): an app
pushed and configured, `manage.py backup`, the platform's processes stopped, its database and BERTH_HOME removed,
`manage.py restore`, the processes started again. The app is served through the router the whole time (the router
and the app's containers are never touched), `apps`/`releases`/`config` answer the same through the API, and the
next push works."""

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import NO_TLS, REPO_DIR, wait_for
from tests.e2e.load import Load
from tests.e2e.test_push_to_live import commit_and_push, get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def manage(berth_platform, *args: str) -> subprocess.CompletedProcess:
    """manage.py as the operator runs it on this platform's machine: its database and BERTH_HOME."""
    return subprocess.run(
        [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), *args],
        env=berth_platform.env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def api_state(berth_platform, token: str, app: str) -> dict:
    """What `berth apps`, `berth releases` and `berth config` show, from the API they speak."""
    headers = {"Authorization": f"Bearer {token}"}
    state = {}
    for name, path in (
        ("apps", "/api/v1/apps"),
        ("releases", f"/api/v1/apps/{app}/releases"),
        ("config", f"/api/v1/apps/{app}/config"),
    ):
        response = httpx.get(berth_platform.web_url + path, headers=headers, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        state[name] = response.json()
    return state


def stop(processes: dict) -> None:
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def destroy_database() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    connection.close()


@pytest.fixture
def schema_back():
    """A restore that failed after the database was destroyed leaves no tables: migrated again for the teardown."""
    yield
    from berth.apps.models import App
    from django.core.management import call_command
    from django.db import connection

    connection.close()
    if App._meta.db_table not in connection.introspection.table_names():
        call_command("migrate", verbosity=0)


def test_the_control_plane_destroyed_and_restored_keeps_the_app_served_and_the_next_push_works(
    repo, tenant, berth_platform, tmp_path, schema_back
):
    from berth.releases.models import Release

    app = tenant.app.name
    host = f"{app}.localhost"
    first = commit_and_push(repo, "before the loss")
    assert first.returncode == 0, first.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    headers = {"Authorization": f"Bearer {tenant.token}"}
    response = httpx.patch(
        f"{berth_platform.web_url}/api/v1/apps/{app}/config",
        json={"GREETING": "hello", "DATABASE_URL": "postgres://db.example/app"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    wait_for(
        lambda: Release.objects.filter(app=tenant.app, version=2, status="live").exists(),
        timeout=180,
        message="v2 (the config change) live",
    )
    wait_for(
        lambda: Release.objects.get(app=tenant.app, version=1).status == "superseded",
        timeout=60,
        message="v1 superseded",
    )
    before = api_state(berth_platform, tenant.token, app)
    assert [r["version"] for r in before["releases"]][:2] in ([2, 1], [1, 2])
    assert before["config"]["GREETING"] == "hello"

    archive = tmp_path / "control-plane.tar.gz"
    started = time.monotonic()
    backup = manage(berth_platform, "backup", "--output", str(archive))
    backup_seconds = time.monotonic() - started
    assert backup.returncode == 0, backup.stderr
    size = archive.stat().st_size

    with Load(berth_platform.router_port, host, threads=2, max_seconds=300) as load:
        time.sleep(1)
        # the control plane is lost: its processes, its database, its BERTH_HOME
        stop(berth_platform.processes)
        destroy_database()
        shutil.rmtree(berth_platform.home)
        assert not Path(berth_platform.home).exists()
        served_while_down = load.ok

        started = time.monotonic()
        restored = manage(berth_platform, "restore", str(archive), "--yes")
        restore_seconds = time.monotonic() - started
        assert restored.returncode == 0, restored.stdout + restored.stderr
        for name in ("web", "worker", "watcher"):
            berth_platform.start(name)
        wait_for(
            lambda: _answers(berth_platform.web_url + "/healthz"),
            timeout=60,
            message="the web process back",
        )
        time.sleep(3)  # the watcher's first reconcile of the restored app, under load
    print(
        f"\ncontrol-plane archive {size / 1024:.0f} KiB; backup {backup_seconds:.1f} s; restore "
        f"{restore_seconds:.1f} s; {load.ok} requests served, {load.failed} failed across the loss and restore"
    )
    print(restored.stdout)
    assert "archive checked" in restored.stdout
    assert "git repositories restored: 1" in restored.stdout
    assert "1 apps, 1 services running, re-adopted" in restored.stdout
    assert "router state kept" in restored.stdout
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert load.ok > served_while_down > 0
    assert load.bodies == {"before the loss"}

    assert api_state(berth_platform, tenant.token, app) == before
    after = commit_and_push(repo, "after the restore")
    assert after.returncode == 0, after.stderr + (berth_platform.logs / "worker-1.log").read_text()[-3000:]
    assert "remote: -----> Released v3" in after.stderr
    assert get(berth_platform.router_port, host).text.strip() == "after the restore"
    config = httpx.get(
        f"{berth_platform.web_url}/api/v1/apps/{app}/config", headers=headers, timeout=30
    ).json()
    assert config == before["config"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, verify=NO_TLS).status_code in (200, 503)
    except httpx.TransportError:
        return False


def test_a_release_whose_services_were_lost_with_the_control_plane_is_redeployed_from_its_image(
    repo, tenant, berth_platform, tmp_path, schema_back
):
    from berth.runtime.scheduler import get_scheduler

    app = tenant.app.name
    host = f"{app}.localhost"
    first = commit_and_push(repo, "lost with the machine")
    assert first.returncode == 0, first.stderr
    archive = tmp_path / "control-plane.tar.gz"
    assert manage(berth_platform, "backup", "--output", str(archive)).returncode == 0
    stop(berth_platform.processes)
    destroy_database()
    shutil.rmtree(berth_platform.home)
    # the machine came back without the app's services (a new swarm); its image is still on this node
    scheduler = get_scheduler()
    scheduler.remove(app=app)
    wait_for(lambda: not scheduler.services(app=app), timeout=60, message="the app's services gone")

    started = time.monotonic()
    restored = manage(berth_platform, "restore", str(archive), "--yes")
    seconds = time.monotonic() - started

    print(f"\nrestore with a redeploy: {seconds:.1f} s\n{restored.stdout}")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "1 apps, 0 services running, re-adopted" in restored.stdout
    assert f"redeployed from their images: {app} v1" in restored.stdout
    assert [s.release for s in scheduler.services(app=app)] == [1]
    wait_for(
        lambda: get(berth_platform.router_port, host).text.strip() == "lost with the machine",
        timeout=30,
        message="the app served again through the router",
    )

"""A lost node's add-on brought back from its last backup onto another node, in one command (issue 14), on the
3-node swarm of network namespaces: the add-on is put on a worker (`addons:create --node`), backed up (the dump
streams over the team's network to Berth's node) and verified, more data is written after the backup, then the
worker is killed (its engine and its cable: the volume is out of reach). `addon_recover` pins a new server to the
node Berth runs on (the manager here), restores the newest verified backup into it, and the add-on answers at the
same URL with the backup's data (what was written after the backup is lost, as with any restore), without a
release of the app. Refused while the add-on's node is ready and active. Figures printed (pytest -s) and written
to test-artifacts/addon-recover.json; README "Add-ons" quotes them. Both kinds in one test: one node kill."""

import json
import secrets
import time

import pytest
from berth.accounts.errors import Conflict
from berth.addons import backups, services
from berth.addons.images import addon_image_build
from berth.addons.models import Addon, BackupState
from berth.addons.selectors import addon_spec
from berth.releases.models import Release
from berth.runtime.addons import addon_image_ref, addon_info, addon_node_of
from berth.runtime.swarm import team_network_remove
from django.test import override_settings

from tests.cluster import harness
from tests.conftest import REPO_DIR, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(900)]


def _load_image(cluster, kind: str) -> None:
    """The add-on image into the engines of the nodes it runs on: the worker it is placed on, the manager it is
    recovered onto (backup jobs run there too). Made on this machine's engine (a no-op when current there), which
    the nodes load it from."""
    with override_settings(DOCKER_HOST=harness.HOST_DOCKER_HOST):
        addon_image_build(kind, echo=lambda line: None)
    harness.load_image(addon_image_ref(kind), f"addon-{kind}", [cluster.manager, cluster.workers[0]])


def _hostname(cluster, node_id: str) -> str:
    return cluster.manager.client.api.inspect_node(node_id)["Description"]["Hostname"]


def _run(addon, app, *words: str) -> str:
    result = services.addon_run(addon=addon, app=app, args=list(words), actor=None)
    assert result.exit_code == 0, result.output
    return result.output.strip()


WRITE = {
    "postgres": [
        (
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            "create table items (n int); insert into items select generate_series(1, 1000)",
        ),
    ],
    "redis": [("SET", "greeting", "from the backup"), ("RPUSH", "items", *[str(n) for n in range(100)])],
}
WRITE_AFTER = {
    "postgres": [("-v", "ON_ERROR_STOP=1", "-tAc", "insert into items select generate_series(1001, 2000)")],
    "redis": [("SET", "greeting", "after the backup")],
}
READ = {
    "postgres": (("-tAc", "select count(*) from items"), "1000"),
    "redis": (("GET", "greeting"), "from the backup"),
}


KINDS = ("postgres", "redis")


def test_a_killed_nodes_addons_are_recovered_onto_berths_node_from_their_last_verified_backups(
    healthy_cluster, on_cluster, db, tmp_path, make_user, make_team, make_app
):
    cluster = healthy_cluster
    on_cluster.BERTH_BACKUP_URL = str(tmp_path / "backups")
    loading = time.monotonic()
    for kind in KINDS:
        _load_image(cluster, kind)
    loaded_s = round(time.monotonic() - loading, 1)
    owner = make_user()
    team = make_team(f"rc{secrets.token_hex(3)}", owner=owner)
    app = make_app(f"rcapp{secrets.token_hex(3)}", team=team, actor=owner)
    Release.objects.create(app=app, version=1, image="demo:v1", procfile={"web": "true"})
    worker = cluster.workers[0]
    figures: dict = {kind: {} for kind in KINDS}
    figures["images_loaded_s"] = loaded_s
    addons: dict[str, Addon] = {}
    urls, verified = {}, {}
    try:
        for kind in KINDS:
            started = time.monotonic()
            addon = services.addon_create(
                app=app, kind=kind, name=f"{kind[:2]}db", node=worker.node_id, actor=owner
            )
            addons[kind] = addon
            figures[kind]["provision_on_worker_s"] = round(time.monotonic() - started, 1)
            assert addon.node == worker.node_id == addon_node_of(addon_spec(addon))
            urls[kind] = services.addon_url(addon)
            info = addon_info(addon_spec(addon))  # on another node: what Swarm says of it
            assert info["running"] and info["node"] == _hostname(cluster, worker.node_id), info
            for words in WRITE[kind]:
                _run(addon, app, *words)
            backup = backups.backup_capture(addon=addon, actor=owner)
            assert backup.state == BackupState.CAPTURED, backup.error
            verified[kind] = backups.backup_verify(backup)
            assert verified[kind].state == BackupState.VERIFIED, verified[kind].error
            for words in WRITE_AFTER[kind]:
                _run(addon, app, *words)
            read, expected = READ[kind]
            assert _run(addon, app, *read) != expected  # the later write is there before the loss
            with pytest.raises(Conflict, match="ready and active"):
                backups.addon_recover(addon=addon, actor=owner)  # its node is fine: its data is there

        releases_before = Release.objects.filter(app=app).count()
        killed_at = time.monotonic()
        worker.kill()

        def worker_down() -> bool:
            node = cluster.manager.client.api.inspect_node(worker.node_id)
            return node["Status"]["State"] == "down"

        wait_for(worker_down, timeout=120, interval=0.5, message=f"{worker.name} seen down by the manager")
        figures["worker_down_after_s"] = round(time.monotonic() - killed_at, 1)

        for kind in KINDS:
            recovery = backups.addon_recover(addon=Addon.objects.get(pk=addons[kind].pk), actor=owner)
            addon = Addon.objects.get(pk=addons[kind].pk)
            figures[kind].update(
                recover_s=round(recovery.seconds, 1),
                backup=recovery.backup.name,
                from_node=recovery.old_node,
                to_node=recovery.new_node,
            )
            assert recovery.backup.pk == verified[kind].pk  # the newest verified one
            assert addon.node == cluster.manager.node_id == addon_node_of(addon_spec(addon))
            assert services.addon_url(addon) == urls[kind]  # the apps' config var holds the same URL
            read, expected = READ[kind]
            assert _run(addon, app, *read) == expected  # the backup's data, at the same URL
            figures[kind]["answering_after_kill_s"] = round(time.monotonic() - killed_at, 1)
            with pytest.raises(Conflict, match="ready and active"):
                backups.addon_recover(addon=addon, actor=owner)  # now on a healthy node: refused again
        assert Release.objects.filter(app=app).count() == releases_before  # no release was needed
    finally:
        for addon in addons.values():
            try:
                services.addon_destroy(addon=Addon.objects.get(pk=addon.pk), actor=None)
            except Exception:  # noqa: BLE001 - the harness goes at the session's end anyway
                pass
        team_network_remove(team=team.name)
        print(json.dumps(figures, indent=2))
        artifacts = REPO_DIR / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "addon-recover.json").write_text(json.dumps(figures, indent=2) + "\n")

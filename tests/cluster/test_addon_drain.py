"""What draining an add-on's node does (issue 14), measured on the 3-node swarm of network namespaces: the add-on
is pinned to the node its volume lives on (the manager here), so a drain stops its server and Swarm leaves its task
pending ("no suitable node") instead of starting an empty server elsewhere; the app's DATABASE_URL stops
answering; once the node is active again the same server, with the same data, answers. The figures are printed
(pytest -s) and written to test-artifacts/addon-drain.json; README "Add-ons" quotes them. Whether the URL answers
is seen from a worker node on the team's network (a probe service connecting twice a second), where an app runs: a
one-off on the drained node itself cannot even join the team's network (Swarm schedules no network attachment
there: "attaching to network failed").

The drain is the cluster's own (its manager, in its namespace), never the host's swarm; `healthy_cluster` makes
every node active again afterwards, whatever happened."""

import json
import time
import uuid

import docker
import pytest
from berth.addons.images import addon_image_build
from berth.runtime.addons import (
    AddonRuntimeError,
    AddonSpec,
    addon_client_command,
    addon_image_ref,
    addon_service_create,
    addon_service_remove,
    addon_wait_ready,
)
from berth.runtime.oneoff import run_oneoff
from berth.runtime.scheduler import team_network_name
from django.test import override_settings

from tests.cluster import harness
from tests.cluster.conftest import TEST_LABELS
from tests.conftest import REPO_DIR, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(900)]
HOLD_S = 30  # how long the drained add-on is watched staying pending
# Where an app runs (a worker node, the team's network): connects to the add-on's host and port twice a second and
# prints "<unix time> ok" or "<unix time> fail <why>"; bounded to PROBE_S seconds.
PROBE_S = 600
PROBE = """
import os, socket, sys, time
host, port, end = os.environ["ADDON_HOST"], 5432, time.time() + float(os.environ["PROBE_S"])
while time.time() < end:
    try:
        socket.create_connection((host, port), timeout=2).close()
        print(f"{time.time():.2f} ok", flush=True)
    except OSError as exc:
        print(f"{time.time():.2f} fail {exc}", flush=True)
    time.sleep(0.5)
"""


def _load_addon_image(cluster) -> None:
    """The add-on image into the manager's engine (the nodes start with the stack image only), made on this
    machine's engine (a no-op when current there), which the nodes load it from."""
    with override_settings(DOCKER_HOST=harness.HOST_DOCKER_HOST):
        addon_image_build("postgres", echo=lambda line: None)
    harness.load_image(addon_image_ref("postgres"), "addon-postgres", [cluster.manager])


def _psql(spec: AddonSpec, sql: str) -> tuple[int | None, str]:
    """psql through the URL an app gets (DATABASE_URL), from a one-off container on the team's network."""
    lines: list[str] = []
    result = run_oneoff(
        app="t-drain",
        team=spec.team,
        release=0,
        image=addon_image_ref("postgres"),
        command=addon_client_command("postgres", "DATABASE_URL", ["-tAc", sql]),
        env={"DATABASE_URL": spec.url, "PGCONNECT_TIMEOUT": "3"},
        on_line=lines.append,
        timeout=30,
    )
    return result.exit_code, "\n".join(lines).strip()


def _probe_start(client, spec: AddonSpec) -> str:
    service = client.services.create(
        harness.STACK_IMAGE,
        command=["python3", "-c", PROBE],
        env=[f"ADDON_HOST={spec.service_name}", f"PROBE_S={PROBE_S}"],
        name=f"probe-{spec.team}",
        networks=[team_network_name(spec.team)],
        constraints=["node.role==worker"],
        labels=TEST_LABELS,
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
    )
    return service.id


def _probe_lines(client, service_id: str) -> list[tuple[float, str]]:
    raw = client.api.service_logs(service_id, stdout=True, stderr=True, follow=False)
    text = raw if isinstance(raw, bytes) else b"".join(raw)
    found = []
    for line in text.decode(errors="replace").splitlines():
        stamp, _, what = line.strip().partition(" ")
        try:
            found.append((float(stamp), what))
        except ValueError:
            continue
    return found


def _first(client, service_id: str, since: float, word: str) -> float | None:
    """Seconds from `since` to the probe's first `word` line after it."""
    return next(
        (t - since for t, what in _probe_lines(client, service_id) if t >= since and what.startswith(word)),
        None,
    )


def _probe_report(client, name: str) -> dict:
    try:
        service = client.services.get(name)
    except docker.errors.NotFound:
        return {"service": "not created"}
    return {
        "tasks": [
            (t.get("NodeID", "")[:12], t["Status"]["State"], t["Status"].get("Err", ""))
            for t in client.api.tasks(filters={"service": service.id})
        ],
        "last_lines": _probe_lines(client, service.id)[-6:],
    }


def _tasks(client, service: str) -> list[dict]:
    return client.api.tasks(filters={"service": service})


def test_draining_the_addons_node_leaves_it_pending_and_unreachable_until_the_node_is_back(
    healthy_cluster, on_cluster
):
    cluster = healthy_cluster
    _load_addon_image(cluster)
    spec = AddonSpec(
        team=f"dr{uuid.uuid4().hex[:5]}", name="db", kind="postgres", password=uuid.uuid4().hex, memory_mb=256
    )
    client = cluster.manager.client
    figures: dict = {}
    try:
        node_id = addon_service_create(spec)
        assert node_id == cluster.manager.node_id  # pinned to the engine that made it: its volume is there
        addon_wait_ready(spec)
        assert (
            _psql(spec, "create table items (n int); insert into items select generate_series(1, 1000)")[0]
            == 0
        )
        assert _psql(spec, "select count(*) from items") == (0, "1000")

        probe = _probe_start(client, spec)
        wait_for(
            lambda: _first(client, probe, 0, "ok") is not None, timeout=120, message="the probe connecting"
        )

        spec_of_node = client.api.inspect_node(node_id)
        node_spec = dict(spec_of_node["Spec"], Availability="drain")
        drained_at, drained_wall = time.monotonic(), time.time()
        client.api.update_node(node_id, spec_of_node["Version"]["Index"], node_spec)

        def server_gone() -> bool:
            return not client.api.containers(
                filters={"label": f"com.docker.swarm.service.name={spec.service_name}"}
            )

        wait_for(server_gone, timeout=120, message="the add-on's container stopped by the drain")
        figures["server_stopped_after_s"] = round(time.monotonic() - drained_at, 1)
        wait_for(
            lambda: _first(client, probe, drained_wall, "fail") is not None, timeout=60, message="refused"
        )
        figures["database_url_fails_after_s"] = round(_first(client, probe, drained_wall, "fail"), 1)

        time.sleep(HOLD_S)
        after = [
            what
            for t, what in _probe_lines(client, probe)
            if t >= drained_wall + figures["database_url_fails_after_s"]
        ]
        figures["probe_while_drained"] = {
            "ok": sum(w == "ok" for w in after),
            "fail": len(after) - sum(w == "ok" for w in after),
            "last": after[-1:],
        }
        assert not any(w == "ok" for w in after)  # the app's DATABASE_URL does not answer, from any node
        states = [
            (t["Status"]["State"], t["Status"].get("Err", "")) for t in _tasks(client, spec.service_name)
        ]
        running = [s for s in states if s[0] == "running"]
        pending = [s for s in states if s[0] == "pending"]
        figures["tasks_after_hold"] = states
        figures["held_s"] = HOLD_S
        assert not running, states  # no server started on another node (it would start on an empty volume)
        assert pending and "no suitable node" in pending[0][1], states

        spec_of_node = client.api.inspect_node(node_id)
        client.api.update_node(
            node_id, spec_of_node["Version"]["Index"], dict(spec_of_node["Spec"], Availability="active")
        )
        activated_at, activated_wall = time.monotonic(), time.time()
        addon_wait_ready(spec, timeout=180)
        figures["server_ready_after_activate_s"] = round(time.monotonic() - activated_at, 1)
        wait_for(
            lambda: _first(client, probe, activated_wall, "ok") is not None, timeout=60, message="answers"
        )
        figures["database_url_answers_after_activate_s"] = round(
            _first(client, probe, activated_wall, "ok"), 1
        )
        assert _psql(spec, "select count(*) from items") == (0, "1000")  # the same data
    except AssertionError:
        # printed with the figures: where the probe ran and what it last saw (once it never connected in 120 s)
        figures["probe_when_failed"] = _probe_report(client, f"probe-{spec.team}")
        raise
    finally:
        for service in client.services.list(filters={"name": f"probe-{spec.team}"}):
            service.remove()
        try:
            addon_service_remove(spec)
        except AddonRuntimeError:
            pass
        print(json.dumps(figures, indent=2))
        artifacts = REPO_DIR / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "addon-drain.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")

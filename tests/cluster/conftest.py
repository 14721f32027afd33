"""Fixtures of the multi-node tests: a 3-node swarm built from network namespaces (see harness.py), a router on
its manager, and a tiny web app whose replicas answer with their node's hostname.

Run as root:  .venv/bin/pytest tests/cluster  (the session builds the cluster once, ~15 s, and tears it down).
"""

import os
import subprocess
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from tests.cluster import harness
from tests.conftest import free_port, wait_for

TEST_LABELS = {"org.berth.test": "1"}
# A stdlib web app: answers every GET with the node it runs on (Swarm's {{.Node.Hostname}} template in its env),
# and its task in an X-Task header ({{.Task.ID}}), so a test sees where each request was served, and when a
# replacement task served its first. SIGTERM ends it at once: the harsh case for a drain.
WEB_APP = """
import http.server, os
NODE = os.environ.get('NODE_HOSTNAME', '?').encode()
TASK = os.environ.get('TASK_ID', '?')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        # the whole answer in one write, as app servers send a small response: an answer cut between its head
        # and its body by a node's death is one the router can neither retry nor complete
        self.wfile.write(b'HTTP/1.1 200 OK\\r\\nX-Task: ' + TASK.encode() + b'\\r\\nContent-Length: '
                         + str(len(NODE)).encode() + b'\\r\\n\\r\\n' + NODE)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('', int(os.environ['PORT'])), H).serve_forever()
"""
COMMAND = 'python3 -c "$APP_CODE"'


def pytest_configure(config):
    # also asked for in pyproject.toml; registered here so --strict-markers accepts it meanwhile
    config.addinivalue_line("markers", "cluster: builds a multi-node swarm from network namespaces (root)")


@pytest.fixture(scope="session")
def cluster(request):
    """The 3-node swarm (manager berthc-node1, workers berthc-node2/3); torn down at the end of the session."""
    cluster = None
    try:
        # bench/cluster_failover.py --heartbeat sets Swarm's dispatcher heartbeat (Docker's default: 5 s)
        heartbeat = float(os.environ.get("BERTH_CLUSTER_HEARTBEAT") or 0) or None
        cluster = harness.create(3, heartbeat_s=heartbeat)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"cluster: 3-node swarm set up in {cluster.setup_seconds:.1f}s")
        yield cluster
    finally:
        harness.destroy(cluster)


@pytest.fixture
def healthy_cluster(cluster):
    """The cluster with every node up, ready and active again after a test drained, killed or labelled one."""
    yield cluster
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            rejoin(cluster, node)
    client = cluster.manager.client
    for raw in client.api.nodes():
        spec = dict(raw["Spec"])
        if spec.get("Availability") != "active" or spec.get("Labels"):
            spec.update(Availability="active", Labels={})
            client.api.update_node(raw["ID"], raw["Version"]["Index"], spec)
    harness.wait_nodes_ready(cluster, len(cluster.nodes), timeout=60)


def rejoin(cluster, node) -> float:
    """Bring a killed node back (link up, its containerd and dockerd again); returns seconds until it is ready."""
    started = time.monotonic()
    subprocess.run(["ip", "link", "set", node.cable, "up"], check=False)
    node.start()
    node.wait_ready(timeout=30)
    wait_for(
        lambda: next(
            n["Status"]["State"] == "ready"
            for n in cluster.manager.client.api.nodes()
            if n["ID"] == node.node_id
        ),
        timeout=60,
        message=f"{node.name} ready again",
    )
    return time.monotonic() - started


@pytest.fixture
def on_cluster(cluster, settings):
    """Point the code under test (docker_client via settings.DOCKER_HOST) at the cluster's manager."""
    settings.DOCKER_HOST = cluster.docker_host
    settings.BERTH_SCHEDULER = "swarm"
    return settings


@pytest.fixture
def cluster_router(cluster, on_cluster, tmp_path):
    """HAProxy on the manager node (in its namespace), as in a real install where Berth and its router run on the
    manager: the scheduler addresses the manager's own tasks as 127.0.0.1 and the others by node address.
    The tests reach it from the host at <manager address>:<port>."""
    from berth.routing.haproxy import haproxy_command, write_config

    directory = tmp_path / "router"
    on_cluster.BERTH_ROUTER_DIR = directory
    on_cluster.BERTH_ROUTER_ADMIN_SOCKET = directory / "admin.sock"
    on_cluster.BERTH_ROUTER = "haproxy"
    port = free_port()
    paths = write_config(http_port=port)
    process = subprocess.Popen(
        cluster.ip_netns_exec(cluster.manager, *haproxy_command(paths)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: on_cluster.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket"
        )
        yield SimpleNamespace(paths=paths, port=port, host=cluster.manager.address, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def cluster_app(on_cluster, cluster, db):
    """An app with a live release (rows only, so the reconcile routes it) whose web process runs on the cluster.

    Yields a namespace with .app, .release, .hostname and deploy(replicas=, constraints=) that starts the web
    service and waits for its replicas; the services are removed afterwards.
    """
    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from berth.releases.models import ReleaseStatus
    from berth.releases.services import release_create
    from berth.runtime.scheduler import ProcessSpec
    from berth.runtime.swarm import SwarmScheduler
    from django.contrib.auth import get_user_model

    suffix = uuid.uuid4().hex[:6]
    user = get_user_model().objects.create_user(username=f"cl-{suffix}", password="x")
    team = team_create(name=f"cl-{suffix}", actor=user)
    app = app_create(name=f"t-cl-{suffix}", team=team, actor=user)
    # created live: only rows, so no deploy task starts; the test runs the web service on the cluster itself
    release = release_create(
        app=app,
        image=harness.STACK_IMAGE,
        procfile={"web": COMMAND},
        description="cluster",
        actor=user,
        status=ReleaseStatus.LIVE,
    )
    scheduler = SwarmScheduler(extra_labels=TEST_LABELS)

    def deploy(replicas: int = 2, constraints: list[str] | None = None, timeout: float = 90):
        spec = ProcessSpec(
            app=app.name,
            team=team.name,
            release=release.version,
            process="web",
            image=harness.STACK_IMAGE,
            command=COMMAND,
            # Swarm fills in the template per task: the app answers with the node that runs it
            env={"APP_CODE": WEB_APP, "NODE_HOSTNAME": "{{.Node.Hostname}}", "TASK_ID": "{{.Task.ID}}"},
            replicas=replicas,
            constraints=list(constraints or []),
        )
        scheduler.ensure_process(spec)
        return scheduler.wait_running(
            app=app.name, release=release.version, process="web", replicas=replicas, timeout=timeout
        )

    namespace = SimpleNamespace(
        app=app,
        release=release,
        team=team,
        scheduler=scheduler,
        hostname=f"{app.name}.test",
        deploy=deploy,
    )
    yield namespace
    scheduler.remove(app=app.name, timeout=30)


@pytest.fixture
def watcher(on_cluster, transactional_db):
    """Berth's watcher (discovery.watch) in a thread, following the cluster's manager, full reconcile every 1 s."""
    from berth.discovery.services import watch
    from django.db import connection

    stop = threading.Event()

    def run():
        try:
            watch(stop=stop, full_every=1.0)
        finally:
            connection.close()  # this thread's own connection: the test database is dropped afterwards

    thread = threading.Thread(target=run, daemon=True, name="watcher")
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=10)

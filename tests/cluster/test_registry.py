"""Images travel through a private registry: Debian's docker-registry with htpasswd auth on the cluster's
bridge; an image pushed once is named by digest and every node pulls exactly those bytes; a wrong password is a
clear error; an old image is deleted by digest and garbage-collected."""

import subprocess
import warnings

import docker.errors
import pytest

from tests.cluster import harness
from tests.conftest import NO_TLS, free_port, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from berth.runtime import registry

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

USER, PASSWORD = "berth", "registry-secret"


@pytest.fixture
def private_registry(healthy_cluster, tmp_path):
    listen = f"{harness.NETWORK}.1:{free_port()}"
    config = registry.registry_config_write(
        directory=tmp_path / "registry", listen=listen, users={USER: PASSWORD}
    )
    process = subprocess.Popen(
        registry.registry_command(config),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "registry.log", "wb"),
    )
    try:
        import httpx

        wait_for(
            lambda: _answers(httpx, f"http://{listen}/v2/"), timeout=15, message="the registry answering"
        )
        yield listen, config
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, verify=NO_TLS).status_code == 401  # up, and asking for credentials
    except httpx.HTTPError:
        return False


def test_every_node_pulls_the_pushed_image_by_digest(healthy_cluster, on_cluster, private_registry):
    from berth.runtime.scheduler import ProcessSpec
    from berth.runtime.swarm import SwarmScheduler

    listen, config = private_registry
    client = healthy_cluster.manager.client
    with pytest.raises(docker.errors.APIError, match="unauthorized|401"):
        client.login(username=USER, password="wrong", registry=listen, reauth=True)
    client.login(username=USER, password=PASSWORD, registry=listen, reauth=True)
    repository = f"{listen}/t-reg/web"
    reference = registry.image_push(client=client, image=harness.STACK_IMAGE, repository=repository, tag="v1")
    assert reference.startswith(f"{repository}@sha256:")

    # the client that logged in sends the credentials with the service: the workers pull with them
    scheduler = SwarmScheduler(client=client, extra_labels={"org.berth.test": "1"})
    spec = ProcessSpec(
        app="t-reg",
        team="t-reg",
        release=1,
        process="web",
        image=reference,
        command="python3 -m http.server 5000",
        env={},
        replicas=3,
    )
    try:
        scheduler.ensure_process(spec)
        tasks = scheduler.wait_running(app="t-reg", release=1, process="web", replicas=3, timeout=90)
        assert len({t.node_id for t in tasks}) == 3
        for node in healthy_cluster.nodes:
            digests = [d for image in node.client.images.list() for d in image.attrs.get("RepoDigests") or []]
            assert reference in digests, (node.name, digests)
    finally:
        scheduler.remove(app="t-reg", timeout=30)

    digest = reference.partition("@")[2]
    assert registry.digests_to_prune(references=[reference, f"{repository}@sha256:{'0' * 64}"], keep=1) == [
        digest
    ]
    assert registry.manifest_delete(
        registry=listen, repository="t-reg/web", digest=digest, user=USER, password=PASSWORD
    )
    gc = subprocess.run(registry.registry_gc_command(config), capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr[-500:]
    assert "blob eligible for deletion" in gc.stdout + gc.stderr


@pytest.fixture
def node_sockets(healthy_cluster, settings):
    """Each node's Docker socket at a path Swarm's template can name (/…/<hostname>/docker.sock): the test nodes
    keep theirs under their own folder, where a real node has /var/run/docker.sock."""
    links = []
    for node in healthy_cluster.nodes:
        link = harness.BASE / node.name
        if not link.is_symlink():
            link.symlink_to(node.directory)
        links.append(link)
    settings.BERTH_NODE_DOCKER_SOCKET = str(harness.BASE / "{{.Node.Hostname}}" / "docker.sock")
    yield
    for link in links:
        link.unlink(missing_ok=True)


def _build(client, tag: str, content: str) -> str:
    import io
    import tarfile

    dockerfile = f"FROM {harness.STACK_IMAGE}\nRUN echo {content} > /version\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True)
    return image.id


def _has(node, reference: str) -> bool:
    try:
        node.client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


def test_old_images_leave_every_node_through_a_global_job_but_one_a_container_uses(
    healthy_cluster, on_cluster, private_registry, node_sockets, settings, db
):
    """images_gc on the cluster: the old release's manifest leaves the registry, its image leaves the manager
    (SDK) and the workers (a Swarm global job); the live release's image stays everywhere and keeps running;
    a worker where a (stopped) container still uses the old image keeps it: the engine refuses, "in use"."""
    import uuid

    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from berth.nodes.images import images_gc
    from berth.releases.models import Release
    from berth.releases.services import release_create
    from berth.runtime.images import GC_LABEL
    from berth.runtime.scheduler import ProcessSpec
    from berth.runtime.swarm import SwarmScheduler
    from django.contrib.auth import get_user_model

    listen, config = private_registry
    settings.BERTH_REGISTRY = listen
    settings.BERTH_REGISTRY_DIR = config.parent
    settings.BERTH_REGISTRY_USER, settings.BERTH_REGISTRY_PASSWORD = USER, PASSWORD
    manager = healthy_cluster.manager
    suffix = uuid.uuid4().hex[:6]
    user = get_user_model().objects.create_user(username=f"gc-{suffix}", password="x")
    app = app_create(name=f"t-gc-{suffix}", team=team_create(name=f"gc-{suffix}", actor=user), actor=user)
    references = []
    for version in (1, 2):
        _build(manager.client, f"berth/{app.name}:build-{version}", f"{suffix}-{version}")
        references.append(
            registry.registry_push(
                image=f"berth/{app.name}:build-{version}",
                repository=f"{listen}/{app.name}",
                tag=f"build-{version}",
                client=manager.client,
            )
        )
    old, new = references
    release_create(app=app, image=old, procfile={}, description="old", actor=user, status="superseded")
    release_create(app=app, image=new, procfile={}, description="new", actor=user, status="live")

    scheduler = SwarmScheduler(extra_labels={"org.berth.test": "1"})
    keeper = healthy_cluster.workers[0]
    kept_container = None

    def run(version: int, image: str) -> None:
        spec = ProcessSpec(
            app=app.name,
            team=app.team.name,
            release=version,
            process="worker",
            image=image,
            command="sleep 600",
            env={},
            replicas=3,
        )
        scheduler.ensure_process(spec)
        tasks = scheduler.wait_running(
            app=app.name, release=version, process="worker", replicas=3, timeout=120
        )
        assert len({t.node_id for t in tasks}) == 3  # one on each node: each node pulled it by digest

    try:
        run(1, old)
        scheduler.remove(app=app.name, release=1, timeout=30)
        for node in healthy_cluster.nodes:
            wait_for(
                lambda node=node: (
                    not node.client.containers.list(all=True, filters={"label": f"org.berth.app={app.name}"})
                ),
                timeout=60,
                message=f"v1's container gone on {node.name}",
            )
        run(2, new)
        # a stopped container still made from the old image on one worker: that node must keep it
        kept_container = keeper.client.containers.create(old, command=["true"])
        assert all(_has(node, old) and _has(node, new) for node in healthy_cluster.nodes)

        import httpx

        layers = httpx.get(
            f"http://{listen}/v2/{app.name}/manifests/{old.partition('@')[2]}",
            auth=(USER, PASSWORD),
            headers={"Accept": registry.MANIFEST_TYPES},
        ).json()["layers"]
        own_layer = layers[-1]["digest"].partition(":")[2]  # the RUN step only the old image has
        blob = config.parent / "data/docker/registry/v2/blobs/sha256" / own_layer[:2] / own_layer
        assert blob.is_dir()

        report = images_gc(app=app, keep_releases=1)

        assert report.errors == [], report.errors
        assert report.releases_pruned == 1 and report.manifests_deleted == 1
        assert Release.objects.get(app=app, version=1).image_pruned_at is not None
        assert Release.objects.get(app=app, version=2).image_pruned_at is None
        gone = httpx.get(
            f"http://{listen}/v2/{app.name}/manifests/{old.partition('@')[2]}",
            auth=(USER, PASSWORD),
            headers={"Accept": registry.MANIFEST_TYPES},
        )
        assert gone.status_code == 404
        assert not blob.exists()  # reclaimed by the registry's garbage-collect
        # the manager, through the SDK (its last tag gone, the engine drops the image and its digest reference)
        assert not _has(manager, old) and f"berth/{app.name}:build-1" in report.local_removed
        for worker in healthy_cluster.workers:
            assert _has(worker, new), worker.name
            assert _has(worker, old) == (worker is keeper), worker.name
        assert old in report.nodes_removed  # the other worker, through the global job
        assert old in report.in_use  # the keeper's engine refused: a container uses it
        assert _has(manager, new)
        running = scheduler.tasks(app=app.name, release=2)
        assert sum(1 for t in running if t.running) == 3  # the live release never stopped
        # the job cleaned up after itself
        assert not manager.client.services.list(filters={"label": GC_LABEL})
    finally:
        if kept_container is not None:
            kept_container.remove(force=True)
        scheduler.remove(app=app.name, timeout=30)
        for node in healthy_cluster.nodes:
            for reference in (old, new, f"berth/{app.name}:build-1", f"berth/{app.name}:build-2"):
                try:
                    node.client.images.remove(reference)
                except docker.errors.APIError:
                    pass

"""Garbage collection of old releases' images: on the registry, on this manager and on every other node.

Kept for each app: the images of its last BERTH_IMAGE_RETENTION_RELEASES releases, of its live release and of
anything in flight (a release pending, built or deploying; a build still running). Every other release's image
is pruned: the release is marked first (a rollback to it is refused from then on), then its manifest is deleted
from the registry, the registry's blobs are collected, and the image is removed from every node. An image some
container still uses is never removed (the engine refuses; that counts as "in use, kept").

The other nodes are reached through Swarm itself: a short-lived `global-job` service runs the stack image there
with the node's Docker socket mounted and NODE_SCRIPT (stdlib only) removes the app's images not kept.
"""

import json
import logging
import time
from dataclasses import dataclass, field

import docker
import docker.errors
from django.conf import settings

from berth.nodes import registry
from berth.runtime.client import docker_client

logger = logging.getLogger(__name__)

GC_LABEL = "org.berth.images-gc"
CONTAINERS_GONE_TIMEOUT_S = 60  # above the 30 s stop grace of a destroyed app's processes
LOCAL_REPOSITORY = "berth"  # builds tag berth/<app>:build-<token> on the manager
JOB_TIMEOUT = 180
# Runs on each node in the stack image (python3, nothing else): removes every image of the given repositories
# none of whose references (or id) is in `keep`, one reference at a time, and prints what it did as JSON.
NODE_SCRIPT = r"""
import http.client, json, os, socket, urllib.parse
class Docker(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
def call(method, path):
    connection = Docker("localhost", timeout=60)
    connection.request(method, path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body
def repository(ref):
    if "@" in ref:
        return ref.split("@")[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref
job = json.loads(os.environ["BERTH_GC_JOB"])
repositories, keep = set(job["repositories"]), set(job["keep"])
removed, in_use = [], []
status, body = call("GET", "/images/json")
for image in json.loads(body):
    refs = [r for r in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []) if repository(r) in repositories]
    if not refs or image["Id"] in keep or keep.intersection(refs):
        continue
    for ref in refs:
        status, body = call("DELETE", "/images/" + urllib.parse.quote(ref, safe=""))
        if status == 409:
            in_use.append(ref)
            break
        if status == 200:
            removed.append(ref)
print("BERTH-GC " + json.dumps({"removed": removed, "in_use": in_use}), flush=True)
"""


@dataclass
class AppPlan:
    """What the GC of one app keeps and prunes (image references as releases record them)."""

    app: str
    keep: set[str] = field(default_factory=set)
    prune: list = field(default_factory=list)  # Release rows whose image goes

    @property
    def prune_refs(self) -> list[str]:
        return list(dict.fromkeys(r.image for r in self.prune if r.image))


@dataclass
class GcReport:
    apps: int = 0
    releases_pruned: int = 0
    manifests_deleted: int = 0
    local_removed: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    registry_gc: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def app_plan(app, *, keep_releases: int | None = None) -> AppPlan:
    """Split the app's releases into the kept (last N, live, in flight) and the ones whose image goes."""
    from berth.releases.models import Release, ReleaseStatus

    keep_releases = keep_releases or settings.BERTH_IMAGE_RETENTION_RELEASES
    releases = list(Release.objects.filter(app=app).order_by("-version"))
    in_flight = {ReleaseStatus.LIVE, ReleaseStatus.PENDING, ReleaseStatus.BUILT, ReleaseStatus.DEPLOYING}
    kept = [r for i, r in enumerate(releases) if i < keep_releases or r.status in in_flight]
    plan = AppPlan(app=app.name, keep={r.image for r in kept if r.image})
    kept_ids = {r.pk for r in kept}
    plan.prune = [
        r
        for r in releases
        if r.pk not in kept_ids and r.image_pruned_at is None and r.image and r.image not in plan.keep
    ]
    return plan


def images_gc(*, app=None, keep_releases: int | None = None, log=lambda line: None) -> GcReport:
    """Prune old releases' images of `app` (or of every app): registry, manager, other nodes. Safe to re-run:
    a node that was down is cleaned at the next run (each node removes whatever of the app is not kept)."""
    from berth.apps.models import App
    from berth.builds.models import ACTIVE_BUILD_STATUSES, Build, build_image_tag
    from berth.core.locks import app_lock
    from berth.releases.services import releases_mark_image_pruned

    report = GcReport()
    apps = [app] if app is not None else list(App.objects.all())
    client = docker_client(timeout=300)
    plans = []
    for each in apps:
        # under the app lock: no deploy of this app starts (or rolls back) while its images are chosen
        lock = app_lock(each.name, timeout=60)
        if not lock.acquire(blocking_timeout=60):
            report.errors.append(f"{each.name}: a deploy held the app for a minute; skipped this time")
            continue
        try:
            plan = app_plan(each, keep_releases=keep_releases)
            active = Build.objects.filter(app=each, status__in=ACTIVE_BUILD_STATUSES).values_list(
                "tag_token", flat=True
            )
            protected = {build_image_tag(app_name=each.name, token=token) for token in active}
            releases_mark_image_pruned(releases=plan.prune)
            report.releases_pruned += len(plan.prune)
            report.apps += 1
            plans.append(plan)
            if registry.registry_enabled():
                report.manifests_deleted += _registry_delete(plan, report)
            _local_prune(client, plan, protected, report)
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile: nothing to release
                pass
        if plan.prune:
            log(f"{each.name}: pruned the images of {', '.join(f'v{r.version}' for r in plan.prune)}")
    if registry.registry_enabled() and plans:
        if report.manifests_deleted:
            try:
                report.registry_gc = registry.registry_garbage_collect()
            except registry.RegistryError as exc:
                report.errors.append(str(exc))
        try:
            _nodes_prune(client, plans, report)
        except Exception as exc:  # the next run cleans the nodes; the registry and the manager are done
            logger.exception("image GC on the nodes failed")
            report.errors.append(f"nodes: {exc}")
    return report


def app_images_remove(*, name: str) -> GcReport:
    """A destroyed app's images go everywhere: every tag in the registry, its images on the manager and on the
    other nodes. An image a container still uses is kept (and reported); running it again finishes the job."""
    report = GcReport(apps=1)
    plan = AppPlan(app=name)  # nothing kept
    client = docker_client(timeout=300)
    _wait_containers_gone(client, name)
    if registry.registry_enabled():
        credentials = {"user": settings.BERTH_REGISTRY_USER, "password": settings.BERTH_REGISTRY_PASSWORD}
        try:
            for digest in registry.repository_digests(
                registry=settings.BERTH_REGISTRY, repository=name, **credentials
            ):
                if registry.manifest_delete(
                    registry=settings.BERTH_REGISTRY, repository=name, digest=digest, **credentials
                ):
                    report.manifests_deleted += 1
        except Exception as exc:  # registry down or refusing: the rest still goes; a re-run retries this
            report.errors.append(f"{name}: the registry: {exc}")
        if report.manifests_deleted:
            try:
                report.registry_gc = registry.registry_garbage_collect()
            except registry.RegistryError as exc:
                report.errors.append(str(exc))
    _local_prune(client, plan, set(), report)
    try:
        _nodes_prune(client, [plan], report)
    except Exception as exc:
        logger.exception("image removal on the nodes failed")
        report.errors.append(f"nodes: {exc}")
    return report


def _wait_containers_gone(
    client: docker.DockerClient, name: str, timeout: float = CONTAINERS_GONE_TIMEOUT_S
) -> None:
    """The teardown stops the app's containers (each gets its stop grace): an image still used cannot go."""
    label = {"label": f"org.berth.app={name}"}
    deadline = time.monotonic() + timeout
    while client.api.containers(filters=label) and time.monotonic() < deadline:
        time.sleep(1)
    # what is left stopped (finished one-off runs, exited tasks) belongs to the destroyed app: it goes with it
    for container in client.api.containers(all=True, filters={**label, "status": "exited"}):
        try:
            client.api.remove_container(container["Id"])
        except docker.errors.APIError:
            pass  # Swarm removing it meanwhile


def _registry_delete(plan: AppPlan, report: GcReport) -> int:
    repository = registry.app_repository(plan.app)
    deleted = 0
    for ref in plan.prune_refs:
        name, _, digest = ref.partition("@")
        if name != repository or not registry.DIGEST.fullmatch(digest):
            continue  # not in Berth's registry (an image deployed by reference from elsewhere)
        try:
            if registry.manifest_delete(
                registry=settings.BERTH_REGISTRY,
                repository=plan.app,
                digest=digest,
                user=settings.BERTH_REGISTRY_USER,
                password=settings.BERTH_REGISTRY_PASSWORD,
            ):
                deleted += 1
        except (registry.RegistryError, OSError) as exc:
            report.errors.append(f"{plan.app}: {exc}")
        except Exception as exc:  # httpx: the registry is down; the next run deletes it
            report.errors.append(f"{plan.app}: deleting {digest[:19]} from the registry: {exc}")
    return deleted


def app_repositories(app_name: str) -> set[str]:
    repositories = {f"{LOCAL_REPOSITORY}/{app_name}"}
    if registry.registry_enabled():
        repositories.add(registry.app_repository(app_name))
    return repositories


def _repository(ref: str) -> str:
    if "@" in ref:
        return ref.split("@")[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def _local_prune(client: docker.DockerClient, plan: AppPlan, protected: set[str], report: GcReport) -> None:
    """On this manager: remove the app's images that no kept release names and no running build made."""
    repositories = app_repositories(plan.app)
    keep_ids = set()
    for ref in plan.keep | protected:
        try:
            keep_ids.add(client.api.inspect_image(ref)["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # not knowing what a kept reference is, nothing of this app may go
            report.errors.append(f"{plan.app}: cannot inspect {ref}: {exc.explanation or exc}")
            return
    for image in client.api.images():
        refs = [
            r
            for r in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
            if _repository(r) in repositories
        ]
        if not refs or image["Id"] in keep_ids:
            continue
        for ref in refs:
            try:
                client.api.remove_image(ref)
                report.local_removed.append(ref)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # a container (perhaps stopped) uses it: in use, kept
                    report.in_use.append(ref)
                    break
                report.errors.append(f"{plan.app}: removing {ref}: {exc.explanation or exc}")


def _nodes_prune(client: docker.DockerClient, plans: list[AppPlan], report: GcReport) -> None:
    """On every other node of the swarm: a global job removes the apps' images that are not kept."""
    info = client.api.info()
    local = (info.get("Swarm") or {}).get("NodeID")
    if not (info.get("Swarm") or {}).get("ControlAvailable"):
        return
    # a global job runs only on nodes that are ready and active (a drained node gets no task): the others
    others = [
        n
        for n in client.api.nodes()
        if n["ID"] != local
        and (n.get("Status") or {}).get("State") == "ready"
        and (n.get("Spec") or {}).get("Availability") == "active"
    ]
    if not others:
        return
    job = {
        "repositories": sorted({r for plan in plans for r in app_repositories(plan.app)}),
        "keep": sorted({ref for plan in plans for ref in plan.keep}),
    }
    results = nodes_job_run(client=client, job=job, exclude_node=local)
    for result in results:
        report.nodes_removed += result.get("removed", [])
        report.in_use += result.get("in_use", [])


def nodes_job_run(
    *,
    client: docker.DockerClient,
    job: dict,
    exclude_node: str | None = None,
    labels: dict[str, str] | None = None,
    timeout: float = JOB_TIMEOUT,
) -> list[dict]:
    """Run NODE_SCRIPT once on every node (but `exclude_node`) as a Swarm global job; return each node's
    result ({"removed": [...], "in_use": [...]}). The job service is removed afterwards."""
    from docker import types

    registry.registry_login(client)
    image = registry.stack_image_in_registry(client=client)
    constraints = [f"node.id!={exclude_node}"] if exclude_node else []
    name = f"berth-images-gc-{int(time.time())}"
    service = client.api.create_service(
        types.TaskTemplate(
            container_spec=types.ContainerSpec(
                image=image,
                command=["python3", "-c", NODE_SCRIPT],
                env=[f"BERTH_GC_JOB={json.dumps(job)}"],
                mounts=[
                    types.Mount(
                        target="/var/run/docker.sock", source=settings.BERTH_NODE_DOCKER_SOCKET, type="bind"
                    )
                ],
                labels={GC_LABEL: "1", **(labels or {})},
            ),
            restart_policy=types.RestartPolicy(condition="none"),
            placement=types.Placement(constraints=constraints),
            log_driver={"Name": "json-file"},
        ),
        name=name,
        labels={GC_LABEL: "1", **(labels or {})},
        mode=types.ServiceMode("global-job"),
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            tasks = client.api.tasks(filters={"service": service["ID"]})
            states = [t["Status"]["State"] for t in tasks]
            if tasks and all(s in ("complete", "failed", "rejected", "shutdown", "orphaned") for s in states):
                break
            if time.monotonic() > deadline:
                raise registry.RegistryError(
                    f"the image GC job did not finish on every node in {timeout:.0f}s"
                )
            time.sleep(0.5)
        results = []
        for task in tasks:
            results.append(_job_result(client, task))
        return results
    finally:
        try:
            client.api.remove_service(service["ID"])
        except docker.errors.NotFound:
            pass


def _job_result(client: docker.DockerClient, task: dict) -> dict:
    from berth.runtime.swarm import SwarmScheduler

    node = task.get("NodeID", "")
    if task["Status"]["State"] != "complete":
        return {"node": node, "error": task["Status"].get("Err") or task["Status"]["State"]}
    for line in SwarmScheduler(client=client).task_logs(task["ID"], tail=20):
        _, marker, payload = line.partition("BERTH-GC ")
        if marker:
            return {"node": node, **json.loads(payload)}
    return {"node": node, "error": "no result printed"}

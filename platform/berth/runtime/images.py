"""Images on the engines: removing an app's images on this manager and, through Swarm, on every other node.

Which images go is decided above (berth.nodes.images: the releases kept, the builds in flight); these functions
are told the repositories to clean and the references to keep, and report what they removed. An image some
container still uses is never removed: the engine refuses (409), and that counts as "in use, kept".

The other nodes are reached through Swarm itself: a short-lived `global-job` service runs the stack image there
with the node's Docker socket mounted, and NODE_SCRIPT removes the images not kept.
"""

import json
import time
from dataclasses import dataclass, field

import docker
import docker.errors
from django.conf import settings
from docker import types

from berth.runtime.client import docker_client
from berth.runtime.registry import RegistryError, registry_login, stack_image_in_registry
from berth.runtime.scheduler import LABEL_APP, is_ours
from berth.runtime.swarm import SwarmScheduler

LOCAL_REPOSITORY = "berth"  # builds tag berth/<app>:build-<token> on the manager
GC_LABEL = "org.berth.images-gc"
CONTAINERS_GONE_TIMEOUT_S = 60  # above the 30 s stop grace of a destroyed app's processes
JOB_TIMEOUT = 180
JOB_ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned")

# Runs on each other node, inside the stack image, as the command of a Swarm global job: it removes every image
# of the given repositories none of whose references (or id) is in `keep`, one reference at a time, and prints
# what it did as JSON. It is a string, not code of this module, because it runs in a container on another
# machine: that node has no Berth and no docker SDK, only the stack image's python3 (stdlib) and its Docker
# socket mounted at /var/run/docker.sock, and Swarm gives us no other way to act on a worker's engine (a manager
# reaches only its own engine). `repository` below is `_repository` of this module, repeated for that reason.
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
    owner = (image.get("Labels") or {}).get("org.berth.installation")
    if owner and owner != job.get("installation"):
        continue  # another Berth installation's build of an app of the same name
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
class ImagesRemoved:
    """What an engine (or every other node) did: the references it removed, the ones a container still uses,
    and what failed (one line each, for the administrator)."""

    removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _repository(ref: str) -> str:
    if "@" in ref:
        return ref.split("@")[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def app_containers_wait_gone(
    *, app_name: str, timeout: float = CONTAINERS_GONE_TIMEOUT_S, client: docker.DockerClient | None = None
) -> None:
    """Wait (up to `timeout`) until no container of the app runs on this engine: the teardown stops them (each
    gets its stop grace) and an image still used cannot go. Then remove its stopped ones (finished one-off runs,
    exited tasks): they belong to the destroyed app and would pin its images."""
    client = client or docker_client(timeout=300)
    label = {"label": f"{LABEL_APP}={app_name}"}
    deadline = time.monotonic() + timeout
    while (
        any(is_ours(c.get("Labels")) for c in client.api.containers(filters=label))
        and time.monotonic() < deadline
    ):
        time.sleep(1)
    for container in client.api.containers(all=True, filters={**label, "status": "exited"}):
        if not is_ours(container.get("Labels")):
            continue  # another installation's app of the same name
        try:
            client.api.remove_container(container["Id"])
        except docker.errors.APIError:
            pass  # Swarm removing it meanwhile


def local_images_remove(
    *, app_name: str, repositories: set[str], keep: set[str], client: docker.DockerClient | None = None
) -> ImagesRemoved:
    """On this manager: remove the images of `repositories` that none of the `keep` references names (by any of
    its references or its id). `app_name` only names the app in error lines."""
    client = client or docker_client(timeout=300)
    result = ImagesRemoved()
    # The images are listed before the kept references are looked up: a build of the app (kept by its tag) that
    # ends in between is then either not listed, or listed and found kept. Looked up first, a build ending just
    # after its tag was not found was listed with an id nobody kept, and its new image removed before it was
    # pushed ("no such image", once in make test). An image named by a kept reference is kept whatever its id.
    images = client.api.images()
    keep_ids = set()
    for ref in keep:
        try:
            keep_ids.add(client.api.inspect_image(ref)["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # not knowing what a kept reference is, nothing of this app may go
            result.errors.append(f"{app_name}: cannot inspect {ref}: {exc.explanation or exc}")
            return result
    for image in images:
        refs = [
            r
            for r in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
            if _repository(r) in repositories
        ]
        if not refs or image["Id"] in keep_ids or keep.intersection(refs) or not is_ours(image.get("Labels")):
            continue  # kept, or another installation's build of an app of the same name
        for ref in refs:
            try:
                client.api.remove_image(ref)
                result.removed.append(ref)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # a container (perhaps stopped) uses it: in use, kept
                    result.in_use.append(ref)
                    break
                result.errors.append(f"{app_name}: removing {ref}: {exc.explanation or exc}")
    return result


def nodes_images_remove(
    *, repositories: set[str], keep: set[str], stack_image: str, client: docker.DockerClient | None = None
) -> ImagesRemoved:
    """On every other ready, active node of the swarm: a global job removes the images of `repositories` that no
    `keep` reference names. `stack_image` is the local stack image (berth.builds.stack's reference): it is
    pushed to Berth's registry so every node can run NODE_SCRIPT in it. Nothing to do when this engine is not a
    swarm manager or has no other node. Raises on failure; the next run cleans the nodes."""
    client = client or docker_client(timeout=300)
    result = ImagesRemoved()
    info = client.api.info()
    local = (info.get("Swarm") or {}).get("NodeID")
    if not (info.get("Swarm") or {}).get("ControlAvailable"):
        return result
    # a global job runs only on nodes that are ready and active (a drained node gets no task): the others
    others = [
        n
        for n in client.api.nodes()
        if n["ID"] != local
        and (n.get("Status") or {}).get("State") == "ready"
        and (n.get("Spec") or {}).get("Availability") == "active"
    ]
    if not others:
        return result
    # the installation's id goes with the job: NODE_SCRIPT runs on other nodes, without Berth's settings
    job = {
        "repositories": sorted(repositories),
        "keep": sorted(keep),
        "installation": settings.BERTH_INSTALLATION_ID,
    }
    nodes = nodes_job_run(
        client=client,
        job=job,
        stack_image=stack_image,
        exclude_node=local,
        node_ids=frozenset(n["ID"] for n in others),
    )
    for node in nodes:
        result.removed += node.get("removed", [])
        result.in_use += node.get("in_use", [])
        if "error" in node:
            result.errors.append(f"node {node['node'][:12]}: {node['error']}")
    return result


def nodes_job_run(
    *,
    client: docker.DockerClient,
    job: dict,
    stack_image: str,
    exclude_node: str | None = None,
    node_ids: frozenset[str] = frozenset(),
    labels: dict[str, str] | None = None,
    timeout: float = JOB_TIMEOUT,
) -> list[dict]:
    """Run NODE_SCRIPT once on every node (but `exclude_node`) as a Swarm global job; return each node's
    result ({"removed": [...], "in_use": [...]}, or {"error": ...}). It waits until each of `node_ids` (the
    nodes the job must reach) has a task and every task has ended: the tasks listed all ended is not enough (the
    CI of stop 36 lost one node's result so). The job service is removed afterwards."""
    registry_login(client)
    image = stack_image_in_registry(image=stack_image, client=client)
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
            ended = all(t["Status"]["State"] in JOB_ENDED for t in tasks)
            if tasks and ended and node_ids <= {t.get("NodeID") for t in tasks}:
                break
            if time.monotonic() > deadline:
                raise RegistryError(f"the image GC job did not finish on every node in {timeout:.0f}s")
            time.sleep(0.5)
        return [_job_result(client, task) for task in tasks]
    finally:
        try:
            client.api.remove_service(service["ID"])
        except docker.errors.NotFound:
            pass


def _job_result(client: docker.DockerClient, task: dict) -> dict:
    node = task.get("NodeID", "")
    if task["Status"]["State"] != "complete":
        return {"node": node, "error": task["Status"].get("Err") or task["Status"]["State"]}
    for line in SwarmScheduler(client=client).task_logs(task["ID"], tail=20):
        _, marker, payload = line.partition("BERTH-GC ")
        if marker:
            return {"node": node, **json.loads(payload)}
    return {"node": node, "error": "no result printed"}

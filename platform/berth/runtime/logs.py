"""Container logs as this node's engine keeps them, for the log shipper (berth.observe.shipper): which containers
run, each stream of a container followed from a second on with Docker's timestamps, and the containers that start.

Plain data out (`Container`, chunks of bytes, `ContainerEvent`), never the SDK's objects; `ContainerGone` when a
container was removed meanwhile.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors
from django.conf import settings

from berth.runtime.client import docker_client
from berth.runtime.events import ContainerEvents, container_events
from berth.runtime.scheduler import is_ours


class ContainerGone(Exception):
    """The container was removed (its logs went with it)."""


@dataclass(frozen=True)
class Container:
    """A container on this engine: its id, labels and name ("/shop-v3-web.1.abc")."""

    id: str
    labels: dict[str, str]
    name: str


class LogFollow:
    """One stream of one container, followed: iterate for chunks of "<timestamp> <text>" records, close (from any
    thread) to stop."""

    def __init__(self, response):
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._response)

    def close(self) -> None:
        self._response.close()


class ContainerLogs:
    """This node's engine as the log shipper reads it. `close` when done: it holds a pool of open connections."""

    def __init__(self, client: docker.DockerClient | None = None):
        self.api = (client or docker_client()).api
        # Follows hold a request open for as long as a container runs: no read timeout, and a pool big enough
        # that each keeps its own connection.
        self.stream_api = docker.APIClient(
            base_url=settings.DOCKER_HOST, version=self.api.api_version, timeout=None, max_pool_size=1000
        )

    def node_name(self) -> str:
        """What names this node: its swarm node id, else the engine's host name, else "local"."""
        info = self.api.info()
        return (info.get("Swarm") or {}).get("NodeID") or info.get("Name") or "local"

    def containers(self, *, labels: list[str], running: bool) -> list[Container]:
        """Containers that carry `labels` ("key" or "key=value"): the running ones, or all (`running=False`)."""
        filters = {"label": labels, "status": "running"} if running else {"label": labels}
        return [
            Container(id=c["Id"], labels=c.get("Labels") or {}, name=(c.get("Names") or [""])[0])
            for c in self.api.containers(all=not running, filters=filters)
            if is_ours(c.get("Labels"))  # another installation's containers are not ours to ship
        ]

    def running(self, container_id: str) -> bool:
        try:
            return bool(self.api.inspect_container(container_id)["State"].get("Running"))
        except docker.errors.NotFound:
            return False

    def follow(self, container_id: str, *, stream: str, since: int | None = None) -> LogFollow:
        """Follow the container's `stream` ("stdout" or "stderr") with timestamps, from second `since` (epoch) on
        when given, else from its first line. ContainerGone when there is no such container."""
        options = {"since": since} if since is not None else {}
        try:
            response = self.stream_api.logs(
                container_id,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
                timestamps=True,
                **options,
            )
        except docker.errors.NotFound as exc:
            raise ContainerGone(container_id) from exc
        return LogFollow(response)

    def starts(self, *, labels: list[str]) -> ContainerEvents:
        """The containers that carry `labels` as they start (an event each), on the no-timeout connection pool."""
        return container_events(labels=labels, actions=("start",), api=self.stream_api)

    def close(self) -> None:
        self.stream_api.close()

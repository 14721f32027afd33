"""The engine's stream of container events, as plain data, for whoever follows containers as they change (the
service-discovery watcher, the log shipper).

A stream lasts until it is closed or the engine goes away (a restart ends it); the follower opens a new one and
heals what it missed by other means (a full reconcile, a scan). `engine_unreachable` tells such a loss of the
engine from a request the engine answered with an error.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import docker
import docker.errors
import requests.exceptions

from berth.runtime.client import docker_client
from berth.runtime.scheduler import is_ours


@dataclass(frozen=True)
class ContainerEvent:
    """One thing that happened to a container: its action ("start", "die", "health_status: healthy", …)."""

    action: str
    container_id: str
    attributes: dict[str, str]  # the container's labels, plus its "name" and "image"


class ContainerEvents:
    """An open stream of container events; iterate it to follow them, close it (from any thread) to stop."""

    def __init__(self, stream):
        self._stream = stream

    def __iter__(self) -> Iterator[ContainerEvent]:
        for event in self._stream:
            actor = event.get("Actor") or {}
            if not is_ours(actor.get("Attributes")):
                continue  # another installation's container on this engine: not ours to follow or route
            yield ContainerEvent(
                action=event.get("Action") or "",
                container_id=event.get("id") or actor.get("ID") or "",
                attributes=actor.get("Attributes") or {},
            )

    def close(self) -> None:
        self._stream.close()


def container_events(
    *,
    labels: str | list[str],
    actions: Collection[str] | None = None,
    api: docker.APIClient | None = None,
) -> ContainerEvents:
    """Follow the events of containers that carry `labels` ("key" or "key=value"), only `actions` when given.

    Without `api`, on a client of its own with no read timeout: a stream may stay quiet for hours."""
    filters: dict[str, object] = {"type": "container", "label": labels}
    if actions is not None:
        filters["event"] = list(actions)
    api = api or docker_client(timeout=None).api
    return ContainerEvents(api.events(decode=True, filters=filters))


def engine_unreachable(exc: Exception) -> bool:
    """Whether `exc` means the engine did not answer (restarting, its socket gone), not that it refused a request.

    The SDK raises requests' ConnectionError when the socket does not answer, and a DockerException that is no
    APIError when it cannot even make a client."""
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    return isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError)

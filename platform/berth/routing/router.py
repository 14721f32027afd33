"""The router seam: which hostnames reach which endpoints of an app.

`get_router()` returns the configured implementation; the real one is `HaproxyRouter` (berth.routing.haproxy_router),
which changes a running HAProxy only through its admin socket; `InMemoryRouter` (berth.routing.memory) serves fast
tests of the layers above. Every call states the whole desired state of an app, so calling it twice,
or after a crash half-way, converges on the same result.
"""

import ipaddress
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

# fullmatch: `$` accepts a trailing newline, which would end a line of the HAProxy map early
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


class RouterError(RuntimeError):
    """HAProxy refused a command or did not come back from a reload."""


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


Desired = dict[str, tuple[list[str], list[Endpoint]]]


class Router(ABC):
    """Routes each app's hostnames to its endpoints. Implementations: HaproxyRouter (real), InMemoryRouter."""

    @abstractmethod
    def apply(
        self,
        *,
        app: str,
        hostnames: list[str],
        endpoints: list[Endpoint],
        drain_timeout: float | None = None,
        wait: bool = True,
    ) -> None:
        """Make `app` reachable at exactly these hostnames, served by exactly these endpoints.

        New endpoints take traffic before removed ones are drained, so the app always has a ready server. A
        removed endpoint the checks have marked down is taken out at once: its requests can never finish.
        With wait=False the call returns once removed endpoints get no new requests, and their drain finishes in
        a thread of this process (for the watcher, which must not stop following every app while one drains).
        """

    @abstractmethod
    def remove(self, *, app: str, drain_timeout: float | None = None) -> None:
        """Unmap the app's hostnames, drain its endpoints and free what it used."""

    @abstractmethod
    def state(self) -> dict[str, dict]:
        """{app: {"hostnames": [...], "endpoints": [(address, port, status), ...]}} as the router has it."""

    @abstractmethod
    def sync(self, desired: Desired, *, drain_timeout: float | None = None) -> None:
        """Make the router hold exactly `desired` ({app: (hostnames, endpoints)}); other apps are removed."""

    def drifted(self) -> list[str]:
        """Apps whose routes differ from what was last applied, e.g. because the router restarted: sync them."""
        return []


def clean_hostnames(hostnames: Iterable[str]) -> list[str]:
    """Lower-cased, validated, without duplicates: they go into admin socket commands, so nothing else passes."""
    cleaned: list[str] = []
    for hostname in hostnames:
        name = str(hostname).strip().lower().rstrip(".")
        if not HOSTNAME_RE.fullmatch(name):
            raise ValueError(f"not a hostname: {hostname!r}")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def clean_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    cleaned: list[Endpoint] = []
    for endpoint in endpoints:
        try:
            address = str(ipaddress.ip_address(endpoint.address))
        except ValueError:
            raise ValueError(f"an endpoint's address must be an IP address: {endpoint.address!r}") from None
        if not isinstance(endpoint.port, int) or not 0 < endpoint.port < 65536:
            raise ValueError(f"not a port: {endpoint.port!r}")
        endpoint = Endpoint(address, endpoint.port)
        if endpoint not in cleaned:
            cleaned.append(endpoint)
    return cleaned


def check_app(app: str) -> str:
    if not isinstance(app, str) or not app.strip():
        raise ValueError(f"not an app name: {app!r}")
    return app


# The routers Berth ships, by name: dotted paths of factories imported when first asked for (as Django loads its own
# backends), so this interface never imports its implementations (they import it). ROUTERS holds factories
# registered at run time (a test's own router), which win over these.
ROUTER_BACKENDS = {
    "haproxy": "berth.routing.haproxy_router.HaproxyRouter",
    "memory": "berth.routing.memory.shared_memory_router",
}
ROUTERS: dict[str, Callable[[], Router]] = {}


def get_router() -> Router:
    """The router named by the BERTH_ROUTER setting ("haproxy" unless set)."""
    name = getattr(settings, "BERTH_ROUTER", "haproxy")
    factory = ROUTERS.get(name)
    if factory is None and name in ROUTER_BACKENDS:
        factory = import_string(ROUTER_BACKENDS[name])
    if factory is None:
        raise RouterError(
            f"BERTH_ROUTER={name!r} is not one of {sorted(set(ROUTERS) | set(ROUTER_BACKENDS))}"
        )
    return factory()

"""A router that only remembers: fast tests of the layers above the router seam."""

import threading

from berth.routing.router import Desired, Endpoint, Router, check_app, clean_endpoints, clean_hostnames


class InMemoryRouter(Router):
    """A router that only remembers, for fast tests of the layers above; every endpoint reports UP."""

    def __init__(self):
        self._apps: dict[str, tuple[list[str], list[Endpoint]]] = {}
        self._lock = threading.Lock()

    def apply(self, *, app, hostnames, endpoints, drain_timeout=None, wait=True) -> None:
        hostnames, endpoints = clean_hostnames(hostnames), clean_endpoints(endpoints)
        check_app(app)
        with self._lock:
            for other, (other_hosts, other_endpoints) in list(self._apps.items()):
                self._apps[other] = ([h for h in other_hosts if h not in hostnames], other_endpoints)
            self._apps[app] = (hostnames, endpoints)

    def remove(self, *, app, drain_timeout=None) -> None:
        with self._lock:
            self._apps.pop(app, None)

    def state(self) -> dict[str, dict]:
        with self._lock:
            return {
                app: {
                    "hostnames": sorted(hostnames),
                    "endpoints": [(e.address, e.port, "UP") for e in endpoints],
                }
                for app, (hostnames, endpoints) in sorted(self._apps.items())
            }

    def sync(self, desired: Desired, *, drain_timeout=None) -> None:
        with self._lock:
            self._apps.clear()
        for app, (hostnames, endpoints) in desired.items():
            self.apply(app=app, hostnames=hostnames, endpoints=endpoints)


_memory_router = InMemoryRouter()


def shared_memory_router() -> InMemoryRouter:
    """One instance per process, so what one layer applies another can read (BERTH_ROUTER=memory)."""
    return _memory_router

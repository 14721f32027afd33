"""A router that only remembers: fast tests of the layers above the router seam."""

import threading

from berth.routing.router import (
    Desired,
    Endpoint,
    Router,
    ServedCertificate,
    check_app,
    check_certificate_name,
    check_key_authorization,
    check_maintenance_page,
    check_tls_hostname,
    check_token,
    clean_endpoints,
    clean_hostnames,
    read_bundle,
)


class InMemoryRouter(Router):
    """A router that only remembers, for fast tests of the layers above; every endpoint reports UP.

    It checks its input as the real one does (the same RouterRefused for a malformed token, name or bundle) and
    reads certificates with the same parser, so `certificate_put` returns what HAProxy would serve.
    """

    def __init__(self):
        self._apps: dict[str, tuple[list[str], list[Endpoint]]] = {}
        self._challenges: dict[str, str] = {}
        self._certificates: dict[str, ServedCertificate] = {}
        self._certificate_pems: dict[str, str] = {}
        self._sni_filters: dict[str, tuple[str, ...]] = {}
        self._maintenance: dict[str, str] = {}
        self._host_tls: dict[str, dict[str, bool]] = {}
        self._lock = threading.Lock()

    def apply(self, *, app, hostnames, endpoints, drain_timeout=None, wait=True, retire_idle=True) -> None:
        hostnames, endpoints = clean_hostnames(hostnames), clean_endpoints(endpoints)
        check_app(app)
        with self._lock:
            for other, (other_hosts, other_endpoints) in list(self._apps.items()):
                self._apps[other] = ([h for h in other_hosts if h not in hostnames], other_endpoints)
            self._apps[app] = (hostnames, endpoints)

    def remove(self, *, app, drain_timeout=None) -> None:
        with self._lock:
            self._apps.pop(app, None)

    def routed_endpoints(self, *, app: str) -> set[Endpoint]:
        with self._lock:
            return set(self._apps.get(app, ([], []))[1])

    def applied_routes(self) -> dict[str, tuple[set[str], set[Endpoint]]]:
        with self._lock:
            return {
                app: (set(hostnames), set(endpoints)) for app, (hostnames, endpoints) in self._apps.items()
            }

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

    # -- HTTPS ----------------------------------------------------------------------------------------------------

    def challenge_put(self, *, token: str, key_authorization: str) -> None:
        check_token(token)
        check_key_authorization(key_authorization)
        with self._lock:
            self._challenges[token] = key_authorization

    def challenge_remove(self, *, token: str) -> None:
        check_token(token)
        with self._lock:
            self._challenges.pop(token, None)

    def certificate_put(self, *, name: str, pem: str, hostnames=None) -> ServedCertificate:
        served, _ = read_bundle(name=name, pem=pem)  # refused as the real router refuses it
        sni_filters = tuple(check_tls_hostname(hostname) for hostname in hostnames or ())
        with self._lock:
            self._certificates[name] = served
            self._certificate_pems[name] = pem
            self._sni_filters[name] = sni_filters
        return served

    def served_for(self, name: str) -> tuple[str, ...]:
        """The names certificate `name` answers for by SNI: its filters, else the names it holds."""
        with self._lock:
            return self._sni_filters.get(name) or self._certificates[name].hostnames

    def certificate_remove(self, *, name: str) -> None:
        check_certificate_name(name)
        with self._lock:
            self._certificates.pop(name, None)
            self._certificate_pems.pop(name, None)
            self._sni_filters.pop(name, None)

    def certificates(self) -> dict[str, ServedCertificate]:
        with self._lock:
            return dict(sorted(self._certificates.items()))

    def host_maintenance_put(self, *, hostname: str, page: str) -> None:
        hostname = check_tls_hostname(hostname)
        check_maintenance_page(page)
        with self._lock:
            self._maintenance[hostname] = page

    def host_maintenance_remove(self, *, hostname: str) -> None:
        with self._lock:
            self._maintenance.pop(check_tls_hostname(hostname), None)

    def maintenance(self) -> dict[str, str]:
        """Hostnames in maintenance and their pages (for tests of the layers above)."""
        with self._lock:
            return dict(self._maintenance)

    def host_tls_put(self, *, hostname: str, redirect_https: bool, hsts: bool) -> None:
        hostname = check_tls_hostname(hostname)
        with self._lock:
            self._host_tls[hostname] = {"redirect_https": bool(redirect_https), "hsts": bool(hsts)}

    def host_tls_remove(self, *, hostname: str) -> None:
        hostname = check_tls_hostname(hostname)
        with self._lock:
            self._host_tls.pop(hostname, None)

    # -- what a test of the layers above asks ----------------------------------------------------------------------

    def challenges(self) -> dict[str, str]:
        """{token: key authorization} answered now."""
        with self._lock:
            return dict(self._challenges)

    def certificate_pem(self, name: str) -> str | None:
        """The bundle last put under `name`, or None."""
        with self._lock:
            return self._certificate_pems.get(name)

    def host_tls(self) -> dict[str, dict[str, bool]]:
        """{hostname: {"redirect_https": bool, "hsts": bool}} as last put."""
        with self._lock:
            return {hostname: dict(policy) for hostname, policy in self._host_tls.items()}

    def clear(self) -> None:
        """Forget everything (a test's fresh start with the process-wide instance)."""
        with self._lock:
            self._apps.clear()
            self._challenges.clear()
            self._certificates.clear()
            self._certificate_pems.clear()
            self._host_tls.clear()


_memory_router = InMemoryRouter()


def shared_memory_router() -> InMemoryRouter:
    """One instance per process, so what one layer applies another can read (BERTH_ROUTER=memory)."""
    return _memory_router

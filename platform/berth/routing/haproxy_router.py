"""The real router: HAProxy, changed only through its admin socket (berth.routing.haproxy speaks to it).

Every call states the whole desired state of an app, so calling it twice, or after a crash half-way, converges
on the same result.
"""

import csv
import datetime
import io
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from berth.routing.haproxy import (
    ACME_CHALLENGE_PATH,
    EMPTY_SERVER_STATE,
    SERVER_OPTIONS,
    RouterPaths,
    admin_command,
    backend_name,
    config_arguments,
    crt_list_line,
    locked,
    read_crt_list_lines,
    read_map_file,
    read_slots,
    render_config,
    write_atomically,
    write_map_file,
    write_private,
)
from berth.routing.router import (
    Desired,
    Endpoint,
    Router,
    RouterError,
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
    serial_hex,
)

log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT = 30.0
# How long a drained server whose process is being stopped (apply(retire_idle=False)) waits, out of rotation, for
# the process to go: Swarm's removal plus the app's stop grace (berth.runtime.swarm.STOP_GRACE_S). Until then only
# its checks marking it down retire it; after that any apply does (a process that never stopped).
STOPPING_GRACE_S = 60.0


# srv_admin_state bits of `show servers state`
FORCED_MAINT = 0x01  # `set server … state maint`, or `disabled` in the configuration: the slot is free


FORCED_DRAIN = 0x08  # `set server … state drain`: no new requests, running ones finish


SRV_ST_STOPPED = 0  # srv_op_state of `show servers state`: the checks have marked the server DOWN


@dataclass(frozen=True)
class _Server:
    """One server slot of a backend, as HAProxy reports it."""

    backend: str
    name: str
    index: int
    address: str
    port: int
    admin: int
    status: str
    sessions: int
    op_state: int = 2  # SRV_ST_RUNNING

    @property
    def down(self) -> bool:
        """Marked down by its checks: nothing answers there, so requests still on it can never finish."""
        return self.op_state == SRV_ST_STOPPED

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.name}"

    @property
    def free(self) -> bool:
        return bool(self.admin & FORCED_MAINT)

    @property
    def draining(self) -> bool:
        return bool(self.admin & FORCED_DRAIN)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, self.port)


class HaproxyRouter(Router):
    """HAProxy driven through its admin socket, with Berth's slot assignments kept in slots.json.

    Backend slots are assigned to apps; server slots to endpoints. Freed slots are reused least recently used
    first, so a slot that just lost an endpoint is not pointed somewhere else while old connections linger.
    """

    def __init__(
        self,
        *,
        directory: Path | None = None,
        admin_socket: Path | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        reload_timeout: float = 30.0,
    ):
        self.paths = RouterPaths(Path(directory or settings.BERTH_ROUTER_DIR))
        self.admin_socket = Path(admin_socket or settings.BERTH_ROUTER_ADMIN_SOCKET)
        self.drain_timeout = drain_timeout
        self.reload_timeout = reload_timeout

    # -- the seam ---------------------------------------------------------------------------------------------

    def apply(
        self,
        *,
        app: str,
        hostnames: list[str],
        endpoints: list[Endpoint],
        drain_timeout: float | None = None,
        wait: bool = True,
        retire_idle: bool = True,
    ) -> None:
        hostnames, endpoints = clean_hostnames(hostnames), clean_endpoints(endpoints)
        check_app(app)
        with locked(self.paths):
            slots = self._load()
            draining = self._begin_apply(slots, app=app, hostnames=hostnames, endpoints=endpoints)
            self._save(slots)
        # the lock is not held while draining: other apps' deploys need not wait for this one
        timeout = self._drain_timeout(drain_timeout)
        if wait or not draining:
            self._finish_drains(draining, timeout=timeout, retire_idle=retire_idle)
        else:
            self._finish_later(draining, timeout=timeout, retire_idle=retire_idle)

    def remove(self, *, app: str, drain_timeout: float | None = None) -> None:
        with locked(self.paths):
            slots = self._load()
            draining = self._begin_remove(slots, app=app)
            self._publish_hosts(slots)
            self._save(slots)
        self._finish_drains(draining, timeout=self._drain_timeout(drain_timeout))

    def routed_endpoints(self, *, app: str) -> set[Endpoint]:
        record = self._load()["apps"].get(app)
        if record is None or record.get("removing"):
            return set()
        return {Endpoint(address, port) for address, port in record["endpoints"]}

    def state(self) -> dict[str, dict]:
        slots = self._load()
        runtime_map = self._runtime_map()
        every_server = self._every_server()
        result = {}
        for app, record in sorted(slots["apps"].items()):
            if record.get("removing"):
                continue
            backend = record["backend"]
            result[app] = {
                "hostnames": sorted(host for host, backends in runtime_map.items() if backend in backends),
                "endpoints": [
                    (server.address, server.port, server.status)
                    for server in every_server.get(backend, [])
                    if not server.free
                ],
            }
        return result

    def sync(self, desired: Desired, *, drain_timeout: float | None = None) -> None:
        cleaned = {
            check_app(app): (clean_hostnames(hostnames), clean_endpoints(endpoints))
            for app, (hostnames, endpoints) in desired.items()
        }
        draining: list[_Server] = []
        with locked(self.paths):
            slots = self._load()
            # wanted apps first, so a hostname passing from a removed app to a kept one is never unmapped
            for app, (hostnames, endpoints) in cleaned.items():
                draining += self._begin_apply(slots, app=app, hostnames=hostnames, endpoints=endpoints)
            for app in list(slots["apps"]):
                if app not in cleaned:
                    draining += self._begin_remove(slots, app=app)
            draining += self._begin_orphans(slots)
            self._publish_hosts(slots)
            self._save(slots)
        self._finish_drains(draining, timeout=self._drain_timeout(drain_timeout))

    def applied_routes(self) -> dict[str, tuple[set[str], set[Endpoint]]]:
        return {
            app: (
                set(record["hostnames"]),
                {Endpoint(address, port) for address, port in record["endpoints"]},
            )
            for app, record in self._load()["apps"].items()
            if not record.get("removing")
        }

    def drifted(self) -> list[str]:
        slots = self._load()
        runtime_map = self._runtime_map()
        every_server = self._every_server(free=False)
        drifted = []
        for app, record in sorted(slots["apps"].items()):
            if record.get("removing"):
                continue
            backend = record["backend"]
            hostnames = {host for host, backends in runtime_map.items() if backends == {backend}}
            servers = [s for s in every_server.get(backend, []) if not s.free]
            live = {s.endpoint for s in servers if not s.draining}
            wanted = {Endpoint(address, port) for address, port in record["endpoints"]}
            # a server left draining after a cut-over is retired by an apply that finds it down or idle (the
            # watcher's full round does it): until then the app is not as last applied
            leftover = [s for s in servers if s.endpoint not in wanted]
            if hostnames != set(record["hostnames"]) or live != wanted or leftover:
                drifted.append(app)
        return drifted

    # -- HTTPS --------------------------------------------------------------------------------------------------

    def challenge_put(self, *, token: str, key_authorization: str) -> None:
        check_token(token)
        check_key_authorization(key_authorization)
        with locked(self.paths):
            self._map_put(self.paths.acme_map, ACME_CHALLENGE_PATH + token, key_authorization)

    def challenge_remove(self, *, token: str) -> None:
        check_token(token)
        with locked(self.paths):
            self._map_remove(self.paths.acme_map, ACME_CHALLENGE_PATH + token)

    def certificate_put(
        self, *, name: str, pem: str, hostnames: Iterable[str] | None = None
    ) -> ServedCertificate:
        wanted, bundle = read_bundle(name=name, pem=pem)
        sni_filters = tuple(check_tls_hostname(hostname) for hostname in hostnames or ())
        path = self.paths.certificate(name)
        line = crt_list_line(path, sni_filters)
        with locked(self.paths):
            self._require_https()
            self._abort_pending_transaction()
            stored = self._stored_certificates()
            previous = path.read_text() if path.exists() else None
            previous_line = self._crt_list_lines().get(str(path))
            # on disk first (the file, then its crt-list line): a router restarted from here on serves it
            write_private(path, bundle)
            self._write_crt_list(add=line)
            try:
                if str(path) not in stored:
                    self._expect(f"new ssl cert {path}", "New empty certificate store")
                self._expect(f"set ssl cert {path}", "Transaction ", payload=bundle)
                self._expect(f"commit ssl cert {path}", "Success!")
                self._runtime_crt_list_put(path, line)
            except RouterError:
                self._undo_certificate_put(
                    path, previous=previous, previous_line=previous_line, was_stored=str(path) in stored
                )
                raise
            served = self._served_certificate(path)
        if served.serial != wanted.serial:
            raise RouterError(
                f"HAProxy serves serial {served.serial} as {name} after the commit, not {wanted.serial}"
            )
        return served

    def certificate_remove(self, *, name: str) -> None:
        check_certificate_name(name)
        path = self.paths.certificate(name)
        with locked(self.paths):
            self._write_crt_list(remove=path)
            if self._https_port():
                self._abort_pending_transaction()
                self._runtime_crt_list_remove(path)
                if str(path) in self._stored_certificates():
                    self._expect(f"del ssl cert {path}", "deleted")
            path.unlink(missing_ok=True)

    def certificates(self) -> dict[str, ServedCertificate]:
        if not self._https_port():
            return {}
        served = {}
        for path in self._runtime_crt_list():
            if Path(path).parent == self.paths.certificates_dir:
                certificate = self._served_certificate(Path(path))
                served[certificate.name] = certificate
        return dict(sorted(served.items()))

    def host_maintenance_put(self, *, hostname: str, page: str) -> None:
        hostname, encoded = check_tls_hostname(hostname), check_maintenance_page(page)
        with locked(self.paths):
            self._map_put(self.paths.maintenance_map, hostname, encoded)

    def host_maintenance_remove(self, *, hostname: str) -> None:
        hostname = check_tls_hostname(hostname)
        with locked(self.paths):
            self._map_remove(self.paths.maintenance_map, hostname)

    def host_tls_put(self, *, hostname: str, redirect_https: bool, hsts: bool) -> None:
        hostname = check_tls_hostname(hostname)
        with locked(self.paths):
            for map_file, wanted in ((self.paths.redirect_map, redirect_https), (self.paths.hsts_map, hsts)):
                if wanted:
                    self._map_put(map_file, hostname, "1")
                else:
                    self._map_remove(map_file, hostname)

    def host_tls_remove(self, *, hostname: str) -> None:
        hostname = check_tls_hostname(hostname)
        with locked(self.paths):
            self._map_remove(self.paths.redirect_map, hostname)
            self._map_remove(self.paths.hsts_map, hostname)

    # -- HTTPS steps ----------------------------------------------------------------------------------------------

    def _https_port(self) -> int:
        return int(self._load()["config"].get("https_port") or 0)

    def _require_https(self) -> None:
        if not self._https_port():
            raise RouterError(
                "this router has no HTTPS frontend (BERTH_HTTPS_PORT=0): it serves no certificate"
            )

    def _map_put(self, map_file: Path, key: str, value: str) -> None:
        """One entry of a map, on disk (for the next start) and in the running HAProxy."""
        entries = read_map_file(map_file)
        entries[key] = value
        write_map_file(map_file, entries)
        if not self._map_in_use(map_file):
            return
        current = self._runtime_map_entries(map_file)
        if key not in current:
            self._command(f"add map {map_file} {key} {value}")
        elif current[key] != [value]:
            if len(current[key]) > 1:  # a duplicate left by a crash between `add`s: one entry again
                self._command(f"del map {map_file} {key}")
                self._command(f"add map {map_file} {key} {value}")
            else:
                self._command(f"set map {map_file} {key} {value}")

    def _map_remove(self, map_file: Path, key: str) -> None:
        entries = read_map_file(map_file)
        if entries.pop(key, None) is not None:
            write_map_file(map_file, entries)
        if self._map_in_use(map_file) and key in self._runtime_map_entries(map_file):
            self._command(f"del map {map_file} {key}")

    def _map_in_use(self, map_file: Path) -> bool:
        """The redirect and HSTS maps are in the configuration only with an HTTPS frontend."""
        return map_file in (self.paths.acme_map, self.paths.maintenance_map) or bool(self._https_port())

    def _runtime_map_entries(self, map_file: Path) -> dict[str, list[str]]:
        answer = self._ask(f"show map {map_file}")
        entries: dict[str, list[str]] = {}
        for line in answer.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0].startswith("0x"):
                entries.setdefault(fields[1], []).append(fields[2])
            elif line.strip():
                raise RouterError(f"unexpected `show map` answer: {answer.strip()[:200]}")
        return entries

    def _expect(self, command: str, success: str, *, payload: str | None = None) -> str:
        """Send an `ssl` command, whose answer says what it did; RouterError unless it holds `success`."""
        try:
            answer = admin_command(command, socket_path=self.admin_socket, payload=payload)
        except OSError as exc:
            raise RouterError(f"HAProxy's admin socket {self.admin_socket} does not answer: {exc}") from exc
        if success not in answer:
            raise RouterError(f"HAProxy refused {command!r}: {answer.strip()[:300] or 'no answer'}")
        return answer

    def _stored_certificates(self) -> set[str]:
        """The certificate files HAProxy holds in memory (`show ssl cert`), committed ones only."""
        return set(self._ssl_cert_listing()[1])

    def _abort_pending_transaction(self) -> None:
        """HAProxy holds one `set ssl cert` transaction at a time: one left by a call that died is aborted."""
        for path in self._ssl_cert_listing()[0]:
            self._expect(f"abort ssl cert {path}", "aborted")

    def _ssl_cert_listing(self) -> tuple[list[str], list[str]]:
        """(files with a transaction open, files stored) from `show ssl cert`."""
        pending, stored = [], []
        for line in self._ask("show ssl cert").splitlines():
            if line.startswith("*"):
                pending.append(line[1:].strip())
            elif line.strip() and not line.startswith("#"):
                stored.append(line.strip())
        return pending, stored

    def _runtime_crt_list(self) -> list[str]:
        return [path for path, _, _ in self._runtime_crt_entries()]

    def _runtime_crt_entries(self) -> list[tuple[str, int, str]]:
        """The running crt-list (`show ssl crt-list -n`): (file, line number, the line without its number)."""
        answer = self._ask(f"show ssl crt-list -n {self.paths.crt_list}")
        if not answer.startswith("#"):
            raise RouterError(f"HAProxy has no crt-list {self.paths.crt_list}: {answer.strip()[:200]}")
        entries = []
        for raw in answer.splitlines():
            if not raw.strip() or raw.startswith("#"):
                continue
            first, *rest = raw.split()
            path, _, number = first.rpartition(":")
            entries.append((path, int(number), " ".join([path, *rest])))
        return entries

    def _runtime_crt_list_put(self, path: Path, line: str) -> None:
        """Make the running crt-list hold `line` for `path`, once: the new line is added before an old one (other
        SNI names) is deleted, so the certificate is never missing meanwhile."""
        mine = [
            (number, held)
            for held_path, number, held in self._runtime_crt_entries()
            if held_path == str(path)
        ]
        if [held for _, held in mine] == [line]:
            return
        if line not in (held for _, held in mine):
            self._expect(f"add ssl crt-list {self.paths.crt_list}", "Success!", payload=line)
        for number, held in sorted(mine, reverse=True):  # the highest first: the lower numbers stay valid
            if held != line:
                self._expect(f"del ssl crt-list {self.paths.crt_list} {path}:{number}", "deleted")

    def _runtime_crt_list_remove(self, path: Path) -> None:
        mine = [number for held_path, number, _ in self._runtime_crt_entries() if held_path == str(path)]
        for number in sorted(mine, reverse=True):
            self._expect(f"del ssl crt-list {self.paths.crt_list} {path}:{number}", "deleted")

    def _crt_list_lines(self) -> dict[str, str]:
        """The crt-list on disk: each certificate file's line."""
        return {line.split()[0]: line for line in read_crt_list_lines(self.paths)}

    def _write_crt_list(self, *, add: str | None = None, remove: Path | None = None) -> None:
        """Write the crt-list with `add` (a whole line) in place of its file's line, and without `remove`'s."""
        added = add.split()[0] if add else None
        lines = [line for file, line in self._crt_list_lines().items() if file not in (str(remove), added)]
        if add is not None:
            lines.append(add)
        write_atomically(self.paths.crt_list, "".join(f"{line}\n" for line in lines))

    def _undo_certificate_put(
        self, path: Path, *, previous: str | None, previous_line: str | None, was_stored: bool
    ) -> None:
        """After a refused put: HAProxy still serves what it served before; the disk goes back to it too."""
        try:
            self._abort_pending_transaction()
            if not was_stored and str(path) in self._stored_certificates():
                self._runtime_crt_list_remove(path)
                self._expect(f"del ssl cert {path}", "deleted")
            elif previous_line is not None:
                self._runtime_crt_list_put(path, previous_line)
        except RouterError:
            log.exception("router: undoing the refused certificate %s", path)
        if previous is None:
            self._write_crt_list(remove=path)
            path.unlink(missing_ok=True)
        else:
            write_private(path, previous)
            if previous_line is not None:
                self._write_crt_list(add=previous_line)

    def _served_certificate(self, path: Path) -> ServedCertificate:
        """What HAProxy holds for one certificate file (`show ssl cert <file>`)."""
        answer = self._ask(f"show ssl cert {path}")
        fields: dict[str, str] = {}
        for line in answer.splitlines():
            key, separator, value = line.partition(":")
            if separator and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        try:
            serial = serial_hex(int(fields["Serial"], 16))
            not_after = datetime.datetime.strptime(
                " ".join(fields["notAfter"].split()), "%b %d %H:%M:%S %Y GMT"
            ).replace(tzinfo=datetime.UTC)
        except (KeyError, ValueError):
            raise RouterError(f"unexpected `show ssl cert {path}` answer: {answer.strip()[:300]}") from None
        hostnames = tuple(
            dict.fromkeys(
                entry.strip()[len("DNS:") :].lower()
                for entry in fields.get("Subject Alternative Name", "").split(",")
                if entry.strip().startswith("DNS:")
            )
        )
        return ServedCertificate(name=path.stem, serial=serial, not_after=not_after, hostnames=hostnames)

    # -- the steps ----------------------------------------------------------------------------------------------

    def _begin_apply(
        self, slots: dict, *, app: str, hostnames: list[str], endpoints: list[Endpoint]
    ) -> list[_Server]:
        """Put new endpoints in, map the hostnames, set the old endpoints draining; returns the draining ones."""
        for other, record in slots["apps"].items():
            if other != app:  # a hostname belongs to one app: the latest to claim it
                record["hostnames"] = [host for host in record["hostnames"] if host not in hostnames]
        record = slots["apps"].get(app)
        if record is None:
            record = slots["apps"][app] = {"backend": self._allocate_backend(slots)}
        record.update(hostnames=hostnames, endpoints=[[e.address, e.port] for e in endpoints])
        record.pop("removing", None)
        backend = record["backend"]

        servers = self._servers(backend)
        kept, missing, free = self._plan(slots, servers, endpoints)
        if len(missing) > len(free):
            self._add_servers(slots, backend=backend, servers=servers, count=len(missing) - len(free))
            servers = self._servers(backend)
            kept, missing, free = self._plan(slots, servers, endpoints)

        stopping = slots.setdefault("stopping", {})
        for server in kept.values():
            if server.draining:  # a rollback to an endpoint that was on its way out
                self._command(f"set server {server.key} state ready")
                stopping.pop(server.key, None)
        for endpoint, server in zip(missing, free, strict=False):
            stopping.pop(server.key, None)
            self._command(f"set server {server.key} addr {endpoint.address} port {endpoint.port}")
            self._command(f"enable health {server.key}")
            self._command(f"set server {server.key} state ready")
            self._touch(slots, server.key)
        # hostnames only after the servers are in, so a new app's first visitor never meets an empty backend
        self._publish_hosts(slots)

        kept_names = {server.name for server in kept.values()}
        return self._drain_or_retire(slots, [s for s in servers if not s.free and s.name not in kept_names])

    def _drain_or_retire(self, slots: dict, servers: list[_Server]) -> list[_Server]:
        """Set servers draining; returns them. One already marked down is put in maintenance at once instead:
        a request stuck on a dead node would otherwise hold the drain (and what waits for it) until HAProxy's
        server timeout."""
        draining = []
        for server in servers:
            if server.down:
                self._retire(slots, server)
            else:
                self._command(f"set server {server.key} state drain")
                draining.append(server)
        return draining

    def _retire(self, slots: dict, server: _Server) -> None:
        """Free a server slot now: maintenance, and whatever sessions it still has closed."""
        self._command(f"set server {server.key} state maint")
        if server.sessions or server.down:  # a down server's count may lag: its sessions are dead anyway
            self._command(f"shutdown sessions server {server.key}")
        slots.setdefault("stopping", {}).pop(server.key, None)
        self._touch(slots, server.key)

    @staticmethod
    def _wait_for_its_process(slots: dict, server: _Server, *, retire_idle: bool) -> bool:
        """Whether a drained server (no session left, not down) stays draining until its process stops: asked by
        this apply (retire_idle=False, noted with a deadline in slots.json), or by an earlier one whose deadline
        has not passed (the watcher's reconcile between a cut-over and the old process's end must not retire it:
        HAProxy would reset the idle connections it pools for it)."""
        stopping = slots.setdefault("stopping", {})
        if not retire_idle:
            stopping[server.key] = [server.address, server.port, time.time() + STOPPING_GRACE_S]
            return True
        noted = stopping.get(server.key)
        if noted and noted[:2] == [server.address, server.port] and noted[2] > time.time():
            return True
        stopping.pop(server.key, None)
        return False

    def _plan(
        self, slots: dict, servers: list[_Server], endpoints: list[Endpoint]
    ) -> tuple[dict[Endpoint, _Server], list[Endpoint], list[_Server]]:
        """Which live servers already serve a wanted endpoint, which endpoints need a slot, which slots are free."""
        kept: dict[Endpoint, _Server] = {}
        for server in servers:
            if not server.free and server.endpoint in endpoints and server.endpoint not in kept:
                kept[server.endpoint] = server
        missing = [endpoint for endpoint in endpoints if endpoint not in kept]
        return kept, missing, self._free_servers(slots, servers)

    def _begin_remove(self, slots: dict, *, app: str) -> list[_Server]:
        record = slots["apps"].get(app)
        if record is None:
            return []
        # kept (marked removing) until its servers are out, so the backend is not given to another app meanwhile
        record.update(hostnames=[], endpoints=[], removing=True)
        self._publish_hosts(slots)
        servers = [s for s in self._servers(record["backend"]) if not s.free]
        for server in servers:  # a removed app's servers go when drained: nothing waits for its processes
            slots.setdefault("stopping", {}).pop(server.key, None)
        return self._drain_or_retire(slots, servers)

    def _begin_orphans(self, slots: dict) -> list[_Server]:
        """Drain servers live in backends no app owns (left by a crash between two steps)."""
        owned = {record["backend"] for record in slots["apps"].values()}
        draining = []
        for slot in range(1, slots["config"]["backends"] + 1):
            if backend_name(slot) in owned:
                continue
            draining += self._drain_or_retire(
                slots, [s for s in self._servers(backend_name(slot)) if not s.free]
            )
        return draining

    def _finish_later(self, draining: list[_Server], *, timeout: float, retire_idle: bool = True) -> None:
        """_finish_drains in a daemon thread; a server already being finished by one is not waited for twice."""
        keys = {(str(self.paths.directory), s.key, s.endpoint): s for s in draining}
        with _finishing_lock:
            mine = {key: server for key, server in keys.items() if key not in _finishing}
            _finishing.update(mine)
        if not mine:
            return

        def finish() -> None:
            try:
                self._finish_drains(list(mine.values()), timeout=timeout, retire_idle=retire_idle)
            except Exception:  # the next apply drains the server again; a watcher thread must not die of it
                log.exception(
                    "router: finishing the drain of %s failed", ", ".join(s.key for s in mine.values())
                )
            finally:
                with _finishing_lock:
                    for key in mine:
                        _finishing.pop(key, None)

        threading.Thread(target=finish, name="router-drain", daemon=True).start()

    def _finish_drains(self, draining: list[_Server], *, timeout: float, retire_idle: bool = True) -> None:
        """Wait (bounded) for draining servers' sessions to end, then put them in maintenance: free slots.

        A server the checks mark down meanwhile is done at once (its sessions are closed). With retire_idle=False
        a server whose requests all ended stays draining (no new request reaches it) for a later apply or sync
        to retire once its process has stopped: maintenance closes the idle keep-alive connections HAProxy pools
        for the server, and HAProxy closes a server connection of its own accord with a reset (SO_LINGER 0, no
        TIME_WAIT on its side), which an app alive at that moment reads as ConnectionResetError on each of them.
        A stopping process closes them itself (a FIN: HAProxy just lets them go), so the roll-out stops the old
        release first and the watcher's reconcile retires the slots.
        """
        deadline = time.monotonic() + timeout
        waiting = list(draining)
        while waiting and time.monotonic() < deadline:
            waiting = self._still_busy(waiting)
            if waiting:
                time.sleep(0.05)
        if not draining:
            with locked(self.paths):
                slots = self._load()
                if self._forget_removed(slots):
                    self._save(slots)
            return
        with locked(self.paths):
            slots = self._load()
            wanted = {
                record["backend"]: {Endpoint(address, port) for address, port in record["endpoints"]}
                for record in slots["apps"].values()
            }
            for backend in sorted({s.backend for s in draining}):
                now = {s.name: s for s in self._servers(backend)}
                for old in (s for s in draining if s.backend == backend):
                    server = now[old.name]
                    if server.free or not server.draining or server.endpoint != old.endpoint:
                        continue  # another call took this slot over meanwhile
                    if server.endpoint in wanted.get(backend, set()):
                        continue  # wanted again (a rollback applied while this one drained)
                    if (
                        not server.sessions
                        and not server.down
                        and self._wait_for_its_process(slots, server, retire_idle=retire_idle)
                    ):
                        continue  # drained; retired once its process has closed its idle connections
                    if server.sessions and not server.down:
                        log.warning(
                            "router: %s (%s:%s) still had %s sessions after %ss of draining; closing them",
                            server.key,
                            server.address,
                            server.port,
                            server.sessions,
                            timeout,
                        )
                    self._retire(slots, server)
            self._forget_removed(slots)
            self._save(slots)

    def _forget_removed(self, slots: dict) -> bool:
        """Free the backend slots of removed apps whose servers are all out."""
        changed = False
        for app, record in list(slots["apps"].items()):
            if record.get("removing") and all(s.free for s in self._servers(record["backend"])):
                del slots["apps"][app]
                self._touch(slots, record["backend"])
                changed = True
        return changed

    def _still_busy(self, servers: list[_Server]) -> list[_Server]:
        busy = []
        for backend in sorted({s.backend for s in servers}):
            try:
                now = {s.name: s for s in self._servers(backend)}
            except RouterError:  # a reload (another app's growth) is swapping the admin socket: ask again
                busy += [s for s in servers if s.backend == backend]
                continue
            busy += [
                s
                for s in servers
                if s.backend == backend and now[s.name].sessions > 0 and not now[s.name].down
            ]
        return busy

    def _publish_hosts(self, slots: dict) -> None:
        """Make HAProxy's Host map, at run time and on disk (for its next start), match slots.json."""
        wanted = {
            host: record["backend"] for record in slots["apps"].values() for host in record["hostnames"]
        }
        write_atomically(self.paths.hosts_map, "".join(f"{h} {b}\n" for h, b in sorted(wanted.items())))
        current = self._runtime_map()
        map_file = self.paths.hosts_map
        for host, backend in sorted(wanted.items()):
            if host not in current:
                self._command(f"add map {map_file} {host} {backend}")
            elif current[host] != {backend}:
                self._command(f"set map {map_file} {host} {backend}")
        for host in sorted(set(current) - set(wanted)):
            self._command(f"del map {map_file} {host}")

    # -- slots --------------------------------------------------------------------------------------------------

    def _allocate_backend(self, slots: dict) -> str:
        owned = {record["backend"] for record in slots["apps"].values()}
        count = slots["config"]["backends"]
        if len(owned) >= count:
            self._grow(slots, backends=len(owned) + 1)
            count = slots["config"]["backends"]
        free = [backend_name(slot) for slot in range(1, count + 1) if backend_name(slot) not in owned]
        backend = min(free, key=lambda name: (slots["used"].get(name, 0), name))
        self._touch(slots, backend)
        return backend

    @staticmethod
    def _free_servers(slots: dict, servers: list[_Server]) -> list[_Server]:
        free = [s for s in servers if s.free]
        return sorted(free, key=lambda s: (slots["used"].get(s.key, 0), s.index))

    @staticmethod
    def _touch(slots: dict, key: str) -> None:
        slots["clock"] += 1
        slots["used"][key] = slots["clock"]

    def _add_servers(self, slots: dict, *, backend: str, servers: list[_Server], count: int) -> None:
        """Give a backend `count` more free server slots at run time (dynamic servers: no reload, nothing dropped).

        HAProxy registers an added server in maintenance, its check configured but off: a free slot, which
        _begin_apply then fills like a declared one. The configuration's server count is raised to match (on disk
        only), so a restart or a reload declares these slots under the same names and the server-state file
        finds them. `disabled` as in the configuration's server-template: the state file carries that flag, and
        a server whose flag differs from its configuration's is left in maintenance by the reload.
        """
        last = max(server.index for server in servers)
        for index in range(last + 1, last + 1 + count):
            name = f"{backend}/s{index}"
            answer = self._ask(f"add server {name} 127.0.0.1:1 {SERVER_OPTIONS} disabled").strip()
            if answer != "New server registered.":
                raise RouterError(f"HAProxy refused to add the server {name}: {answer[:300]}")
        if last + count > slots["config"]["servers"]:
            log.info("router: %s grew to %s server slots at run time", backend, last + count)
            slots["config"]["servers"] = last + count
            self._write_config(slots["config"])

    def _write_config(self, config: dict) -> None:
        """haproxy.cfg for the next start or reload, checked by HAProxy before it replaces the current one."""
        candidate = self.paths.config.with_name(".haproxy.cfg.new")
        candidate.write_text(render_config(paths=self.paths, **config_arguments(config)))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RouterError(f"the grown configuration does not check: {check.stdout}{check.stderr}")
        candidate.replace(self.paths.config)

    def _grow(self, slots: dict, *, backends: int) -> None:
        """Rewrite the configuration with more backend slots and reload HAProxy through its master socket (HAProxy
        2.6 has no way to add a backend at run time).

        The new worker takes the listening sockets over from the old one (no connection refused) and starts with
        the servers' state, which is dumped to the server-state file just before, and the Host map, which is on
        disk. The old worker finishes its requests and closes each keep-alive connection after one more answer.
        """
        old_config = dict(slots["config"])
        config = dict(old_config)
        config["backends"] = max(backends, old_config["backends"] * 2)
        state = self._ask("show servers state")
        # every server added at run time is declared, even one whose count a crash kept out of slots.json
        config["servers"] = max(config["servers"], _most_servers(state))
        log.warning(
            "router: out of slots; reloading HAProxy with %s backends of %s servers",
            config["backends"],
            config["servers"],
        )
        old_pid = self._worker_pid()
        old_text = self.paths.config.read_text()
        write_atomically(self.paths.server_state, state)
        try:
            self._write_config(config)
            admin_command("reload", socket_path=self.paths.master_socket)
            self._wait_for_worker(old_pid=old_pid, config=config)
        except (OSError, RouterError) as exc:
            write_atomically(self.paths.config, old_text)
            raise RouterError(f"HAProxy did not reload with more slots: {exc}") from exc
        finally:
            write_atomically(self.paths.server_state, EMPTY_SERVER_STATE)
        slots["config"] = config
        self._save(slots)

    def _wait_for_worker(self, *, old_pid: int, config: dict) -> None:
        last_backend = backend_name(config["backends"])
        last_server = f"s{config['servers']}"
        deadline = time.monotonic() + self.reload_timeout
        while time.monotonic() < deadline:
            try:
                if self._worker_pid() != old_pid and any(
                    s.name == last_server for s in self._servers(last_backend)
                ):
                    return
            except RouterError:
                pass  # the new worker's socket is not there yet
            time.sleep(0.1)
        raise RouterError(f"no new HAProxy worker within {self.reload_timeout}s")

    # -- HAProxy ------------------------------------------------------------------------------------------------

    def _ask(self, command: str) -> str:
        try:
            return admin_command(command, socket_path=self.admin_socket)
        except OSError as exc:
            raise RouterError(f"HAProxy's admin socket {self.admin_socket} does not answer: {exc}") from exc

    def _command(self, command: str) -> None:
        answer = self._ask(command).strip()
        # `set server … addr` reports what it changed; every other command here answers nothing when it works
        if answer and not (
            " addr " in command and ("changed from" in answer or "no need to change" in answer)
        ):
            raise RouterError(f"HAProxy refused {command!r}: {answer}")

    def _worker_pid(self) -> int:
        for line in self._ask("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise RouterError("`show info` has no Pid")

    def _servers(self, backend: str) -> list[_Server]:
        servers = _parse_servers(
            self._ask(f"show servers state {backend}"), self._ask(f"show stat {backend} 4 -1")
        ).get(backend, [])
        if not servers:
            raise RouterError(f"HAProxy has no backend {backend}")
        return servers

    def _every_server(self, *, free: bool = True) -> dict[str, list[_Server]]:
        """Every backend's server slots (without the free ones unless `free`), asked with two commands whatever
        the number of apps.

        Without the free slots, HAProxy's statistics leave out the servers in maintenance: at 500 apps the free
        slots are 15 in 16 (1.8 MB of statistics, parsed in 120 ms every full round of the watcher; 0.13 MB)."""
        stats = self._ask("show stat -1 4 -1" if free else "show stat -1 4 -1 no-maint")
        return _parse_servers(self._ask("show servers state"), stats, free=free)

    def _runtime_map(self) -> dict[str, set[str]]:
        answer = self._ask(f"show map {self.paths.hosts_map}")
        entries: dict[str, set[str]] = {}
        for line in answer.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0].startswith("0x"):
                entries.setdefault(fields[1], set()).add(fields[2])
            elif line.strip():
                raise RouterError(f"unexpected `show map` answer: {answer.strip()[:200]}")
        return entries

    # -- slots.json ---------------------------------------------------------------------------------------------

    def _load(self) -> dict:
        slots = read_slots(self.paths)
        if "config" not in slots:
            raise RouterError(f"{self.paths.slots} has no configuration record: was the router started?")
        slots.setdefault("apps", {})
        slots.setdefault("used", {})
        slots.setdefault("clock", 0)
        return slots

    def _save(self, slots: dict) -> None:
        write_atomically(self.paths.slots, json.dumps(slots, indent=1, sort_keys=True))

    def _drain_timeout(self, drain_timeout: float | None) -> float:
        return self.drain_timeout if drain_timeout is None else drain_timeout


def _parse_servers(states: str, stats: str, *, free: bool = True) -> dict[str, list[_Server]]:
    """{backend: its server slots} from `show servers state` and `show stat … 4 -1` (servers' rows); without the
    free slots unless `free`. Rows as lists, not dicts: a row has about 100 columns, and thousands of slots are
    parsed at each full round of the watcher."""
    header, _, body = stats.lstrip("# ").partition("\n")
    columns = {name: i for i, name in enumerate(header.split(","))}
    try:
        pxname, svname, status, scur, qcur = (
            columns[name] for name in ("pxname", "svname", "status", "scur", "qcur")
        )
    except KeyError as exc:
        raise RouterError(f"unexpected `show stat` answer: {stats.strip()[:200]}") from exc
    width = max(pxname, svname, status, scur, qcur)
    stat_rows = {
        (row[pxname], row[svname]): (
            row[status].split(" ")[0] or "?",
            int(row[scur] or 0) + int(row[qcur] or 0),
        )
        for row in csv.reader(io.StringIO(body))
        if len(row) > width
    }
    servers: dict[str, list[_Server]] = {}
    for line in states.splitlines():
        fields = line.split()
        if len(fields) < 19 or line.startswith("#"):
            continue
        admin = int(fields[6])
        if not free and admin & FORCED_MAINT:
            continue
        backend = fields[1]
        state, sessions = stat_rows.get((backend, fields[3]), ("?", 0))
        servers.setdefault(backend, []).append(
            _Server(
                backend=backend,
                name=fields[3],
                index=int(fields[2]),
                address=fields[4],
                port=int(fields[18]),
                admin=admin,
                status=state,
                sessions=sessions,
                op_state=int(fields[5]),
            )
        )
    return servers


def _most_servers(servers_state: str) -> int:
    """The highest server id of any app backend in a `show servers state` answer."""
    ids = [
        int(fields[2])
        for fields in (line.split() for line in servers_state.splitlines() if not line.startswith("#"))
        if len(fields) >= 19 and fields[1].startswith("app_")
    ]
    return max(ids, default=0)


# (router directory, server key, endpoint) of drains a thread of this process is finishing (apply(wait=False))
_finishing: dict[tuple[str, str, Endpoint], _Server] = {}


_finishing_lock = threading.Lock()

"""The router: HAProxy in master-worker mode, changed at run time through its admin socket.

The configuration declares a pool of backend slots, each with spare server slots (`server-template`). At run time
Berth maps a Host to a slot (`add map`/`set map`) and sets each server's address and state (`set server`), which
drops no request. Only when the pool runs out is the configuration rewritten with more slots and HAProxy reloaded
through its master socket; the servers' run-time state crosses the reload in a server-state file.
"""

import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

BACKEND_SLOTS = 64
SERVER_SLOTS = 16
EMPTY_SERVER_STATE = "1\n"  # version line only: no server state to load


@dataclass(frozen=True)
class RouterPaths:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def hosts_map(self) -> Path:
        return self.directory / "hosts.map"

    @property
    def not_found_page(self) -> Path:
        return self.directory / "404.http"

    @property
    def master_socket(self) -> Path:
        return self.directory / "master.sock"

    @property
    def server_state(self) -> Path:
        return self.directory / "servers.state"

    @property
    def slots(self) -> Path:
        """Berth's record of which app owns which backend slot, and how many slots the configuration has."""
        return self.directory / "slots.json"

    @property
    def lock(self) -> Path:
        return self.directory / "router.lock"


NOT_FOUND_BODY = (
    "<!doctype html><title>No such app</title>"
    "<h1>No such app</h1><p>There is no Berth app at this address.</p>\n"
)


def backend_name(slot: int) -> str:
    return f"app_{slot:03d}"


def render_config(
    *,
    http_port: int,
    admin_socket: Path,
    paths: RouterPaths,
    backends: int = BACKEND_SLOTS,
    servers: int = SERVER_SLOTS,
) -> str:
    lines = [
        "global",
        "    master-worker",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 2m",
        "    maxconn 4096",  # fits the default fd limit (ulimit -n) without raising it
        # written just before a reload so the new worker starts with the servers the old one had
        f"    server-state-file {paths.server_state}",
        # After a reload the old worker ends its keep-alive connections: a busy one with "Connection: close" on
        # its next answer (clean), an idle one by closing it, which races a request the client is sending.
        # Spreading the idle closes over 5 s lets most connections get a request, and so the clean close, first.
        "    close-spread-time 5s",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    option forwardfor",
        "    load-server-state-from-file global",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 30s",  # first byte within 30 s, as on Heroku
        "    timeout http-keep-alive 60s",
        "    timeout tunnel 1h",  # WebSockets
        # A refused connection (a server that just died) is retried on another server; so is a request the
        # server dropped without answering, unless its method is unsafe to repeat (see the frontend).
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response junk-response",
        "",
        "frontend http",
        f"    bind :{http_port}",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        # the app may already have acted on a POST it dropped; only a refused connection is safe to retry then
        "    http-request disable-l7-retry unless METH_GET || METH_OPTIONS",
        f"    use_backend %[var(txn.host),map({paths.hosts_map})]",
        "    default_backend unknown_host",
        "",
        "backend unknown_host",
        f"    http-request return status 404 content-type text/html file {paths.not_found_page}",
    ]
    for slot in range(1, backends + 1):
        lines += [
            "",
            f"backend {backend_name(slot)}",
            "    balance roundrobin",
            # L4 checks only: Berth checks HTTP readiness itself before it puts a server in. Two failed
            # checks half a second apart take a dead server out of rotation.
            "    default-server inter 1s fastinter 500ms fall 2 rise 1 init-addr none on-marked-down shutdown-sessions",
            f"    server-template s 1-{servers} 127.0.0.1:1 check disabled",
        ]
    return "\n".join(lines) + "\n"


def read_slots(paths: RouterPaths) -> dict:
    try:
        return json.loads(paths.slots.read_text())
    except FileNotFoundError:
        return {}


@contextmanager
def locked(paths: RouterPaths) -> Iterator[None]:
    """Hold the router directory's lock: the web, worker and watcher processes all change the same HAProxy."""
    paths.directory.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, text: str) -> None:
    """Replace a file in one step, so HAProxy (or a reader) never sees it half written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_config(
    *,
    http_port: int | None = None,
    directory: Path | None = None,
    backends: int | None = None,
    servers: int | None = None,
) -> RouterPaths:
    """Write haproxy.cfg (and an empty Host map if none is kept yet) into the router directory.

    Slot counts default to the ones recorded in slots.json, so a restarted router is as large as it had grown.
    """
    paths = RouterPaths(Path(directory or settings.BERTH_ROUTER_DIR))
    paths.directory.mkdir(parents=True, exist_ok=True)
    if not paths.hosts_map.exists():
        paths.hosts_map.write_text("")
    paths.not_found_page.write_text(NOT_FOUND_BODY)
    # a fresh start begins with every server slot free; apply()/sync() fill them
    write_atomically(paths.server_state, EMPTY_SERVER_STATE)
    admin_socket = settings.BERTH_ROUTER_ADMIN_SOCKET if directory is None else paths.directory / "admin.sock"
    with locked(paths):
        slots = read_slots(paths)
        recorded = slots.get("config", {})
        config = {
            "http_port": http_port or settings.BERTH_HTTP_PORT,
            "admin_socket": str(admin_socket),
            "backends": backends or recorded.get("backends", BACKEND_SLOTS),
            "servers": servers or recorded.get("servers", SERVER_SLOTS),
        }
        write_atomically(paths.config, render_config(paths=paths, **config_arguments(config)))
        slots["config"] = config
        write_atomically(paths.slots, json.dumps(slots, indent=1, sort_keys=True))
    return paths


def config_arguments(config: dict) -> dict:
    """render_config()'s arguments from the "config" record kept in slots.json."""
    return {
        "http_port": config["http_port"],
        "admin_socket": Path(config["admin_socket"]),
        "backends": config["backends"],
        "servers": config["servers"],
    }


def haproxy_command(paths: RouterPaths) -> list[str]:
    # -W master-worker, -db stays in the foreground (honcho/systemd supervise it), -S the master CLI
    return ["haproxy", "-W", "-db", "-f", str(paths.config), "-S", f"{paths.master_socket},mode,600"]


def admin_command(command: str, *, socket_path: Path | None = None, timeout: float = 2.0) -> str:
    """Send one command to HAProxy's admin socket (or its master socket) and return its answer."""
    path = socket_path or settings.BERTH_ROUTER_ADMIN_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        # the master CLI answers only once the client has finished sending
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")

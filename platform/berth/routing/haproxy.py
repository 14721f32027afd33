"""The router: HAProxy in master-worker mode, changed only through its admin socket (never by reload).

The configuration declares a pool of backend slots, each with spare server slots (`server-template`). At run time
Berth maps a Host to a slot (`add map`/`set map`) and sets each server's address and state (`set server`), which
drops no request; measured here, reloads of a proxy dropped keep-alive requests.
"""

import socket
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

BACKEND_SLOTS = 64
SERVER_SLOTS = 16


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


NOT_FOUND_BODY = (
    "<!doctype html><title>No such app</title>"
    "<h1>No such app</h1><p>There is no Berth app at this address.</p>\n"
)


def backend_name(slot: int) -> str:
    return f"app_{slot:03d}"


def render_config(
    *, http_port: int, admin_socket: Path, paths: RouterPaths, backends: int = BACKEND_SLOTS
) -> str:
    lines = [
        "global",
        "    master-worker",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 2m",
        "    maxconn 4096",  # fits the default fd limit (ulimit -n) without raising it
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    option forwardfor",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 30s",  # first byte within 30 s, as on Heroku
        "    timeout http-keep-alive 60s",
        "    timeout tunnel 1h",  # WebSockets
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "",
        "frontend http",
        f"    bind :{http_port}",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
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
            "    option httpchk GET /",
            "    http-check expect status 100-499",
            "    default-server inter 1s fall 2 rise 1 init-addr none",
            f"    server-template s 1-{SERVER_SLOTS} 127.0.0.1:1 check disabled",
        ]
    return "\n".join(lines) + "\n"


def write_config(*, http_port: int | None = None, directory: Path | None = None) -> RouterPaths:
    """Write haproxy.cfg (and an empty Host map if none is kept yet) into the router directory."""
    paths = RouterPaths(Path(directory or settings.BERTH_ROUTER_DIR))
    paths.directory.mkdir(parents=True, exist_ok=True)
    if not paths.hosts_map.exists():
        paths.hosts_map.write_text("")
    paths.not_found_page.write_text(NOT_FOUND_BODY)
    admin_socket = settings.BERTH_ROUTER_ADMIN_SOCKET if directory is None else paths.directory / "admin.sock"
    paths.config.write_text(
        render_config(http_port=http_port or settings.BERTH_HTTP_PORT, admin_socket=admin_socket, paths=paths)
    )
    return paths


def haproxy_command(paths: RouterPaths) -> list[str]:
    # -W master-worker, -db stays in the foreground (honcho/systemd supervise it), -S the master CLI
    return ["haproxy", "-W", "-db", "-f", str(paths.config), "-S", f"{paths.master_socket},mode,600"]


def admin_command(command: str, *, socket_path: Path | None = None, timeout: float = 2.0) -> str:
    """Send one command to HAProxy's admin socket and return its answer."""
    path = socket_path or settings.BERTH_ROUTER_ADMIN_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")

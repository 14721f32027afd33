"""The router: HAProxy in master-worker mode, changed at run time through its admin socket.

The configuration declares a pool of backend slots, each with spare server slots (`server-template`). At run time
Berth maps a Host to a slot (`add map`/`set map`) and sets each server's address and state (`set server`), which
drops no request. A backend whose server slots run out gets more at run time (`add server`: HAProxy 2.6's dynamic
servers). Only when the pool of backends runs out (HAProxy 2.6 cannot add a backend at run time) is the
configuration rewritten with more and HAProxy reloaded through its master socket: the new worker takes the listening
sockets over from the old one (`expose-fd listeners`), the servers' run-time state crosses in a server-state file,
and the old worker answers one more request on each keep-alive connection, with "Connection: close", before closing
it (`option idle-close-on-response`), so a reload drops nothing.

HTTPS (BERTH_HTTPS_PORT) is a second frontend with the same routing. Its certificates are files listed in a crt-list
(added, replaced and removed at run time with the `ssl cert` / `ssl crt-list` commands, the files kept in step for
the next start); a self-signed default certificate made here lets it start with none. ACME challenges and each
hostname's redirect/HSTS policy are map files, changed at run time like the Host map.
"""

import datetime
import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings

from berth.routing.router import RouterRefused, clean_hostnames, served_from_pem

log = logging.getLogger(__name__)

BACKEND_SLOTS = 64
SERVER_SLOTS = 16
EMPTY_SERVER_STATE = "1\n"  # version line only: no server state to load
# Every app server's settings, on the configuration's `default-server` line and on each `add server` (a dynamic
# server inherits no default-server). L4 checks only: Berth checks HTTP readiness itself before it puts a server
# in. Two failed checks half a second apart take a dead server out of rotation. Its sessions are not shut down when
# it is marked down (no on-marked-down shutdown-sessions): a request whose connection the dead process just refused
# is between its failed attempt and its retry elsewhere, and shutting it down closed the client's connection without
# an answer (termination state D-: 7 of 40 runs of a killed endpoint under load with the CPU busy, 0 of 40 without
# it). A request in flight to a dead node is retried elsewhere when its connection times out instead.
# HAProxy closes a pooled idle server connection of its own accord with a reset (no TIME_WAIT on its side), which
# the app reads as ConnectionResetError: it trims the pool every pool-purge-delay (5 s by default) and refuses a
# returning connection above its estimate of need. Here the app closes them (its keep-alive timeout, or its exit
# once drained: HaproxyRouter keeps a drained server until its process stops) and HAProxy only follows; the pool is
# trimmed hourly, and keeps up to 64 spare.
SERVER_OPTIONS = "check inter 1s fastinter 500ms fall 2 rise 1 pool-purge-delay 1h pool-low-conn 64"


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

    @property
    def acme_map(self) -> Path:
        """ACME HTTP-01 challenges: /.well-known/acme-challenge/<token> -> key authorization."""
        return self.directory / "acme.map"

    @property
    def redirect_map(self) -> Path:
        """Hostnames whose plain HTTP answers 308 to HTTPS (value: 1)."""
        return self.directory / "redirect.map"

    @property
    def hsts_map(self) -> Path:
        """Hostnames whose HTTPS answers carry Strict-Transport-Security (value: 1)."""
        return self.directory / "hsts.map"

    @property
    def maintenance_map(self) -> Path:
        """Hostnames in maintenance: hostname -> the page to answer with (base64, one token), 503 + Retry-After."""
        return self.directory / "maintenance.map"

    @property
    def certificates_dir(self) -> Path:
        """<name>.pem bundles (private key, leaf, chain), 0600 in a 0700 folder."""
        return self.directory / "certs"

    @property
    def crt_list(self) -> Path:
        """The certificates the HTTPS frontend serves by SNI, one file path a line."""
        return self.directory / "certs.list"

    @property
    def default_certificate(self) -> Path:
        """Self-signed, served to a client naming no hostname Berth has a certificate for."""
        return self.directory / "default.pem"

    def certificate(self, name: str) -> Path:
        return self.certificates_dir / f"{name}.pem"

    @property
    def request_log(self) -> Path:
        """A unix datagram socket HAProxy sends one line per request to (backend, status, time): the metrics
        collector (berth.observe.traffic) binds it; with nobody bound HAProxy drops the lines and serves on."""
        return self.directory / "requests.sock"


NOT_FOUND_BODY = (
    "<!doctype html><title>No such app</title>"
    "<h1>No such app</h1><p>There is no Berth app at this address.</p>\n"
)


ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
HSTS_VALUE = "max-age=31536000"
MAINTENANCE_RETRY_AFTER = 120  # seconds, in the Retry-After of a maintenance answer
WEB_BACKEND = "berth_web"
# One line per request to the metrics collector: backend, status, total active time in ms (request received to
# answer sent, client idle time excluded), then what an app's router access line shows (berth.observe.traffic):
# connect and server times, bytes, termination state, TLS, server, method, request id, host and the path without
# its query string (whose values may be tokens). Quoted with escapes, the path last so a cut line loses only path.
# Raw: no syslog header to parse.
REQUEST_LOG_FORMAT = "%b %ST %Ta %Tc %Tr %B %ts %[ssl_fc] %s %HM %ID %{+Q,+E}[var(txn.host)] %{+Q,+E}HPO"
REQUEST_LOG_MAX_BYTES = 1024  # a datagram's cap; a longer path is cut there
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with its NUL; HAProxy refuses a longer log path at start


def backend_name(slot: int) -> str:
    return f"app_{slot:03d}"


def frontend_rules(*, scheme: str, paths: RouterPaths, https_port: int, dashboard_host: str) -> list[str]:
    """The request rules both frontends share, in HAProxy's order: ACME answer, redirect, headers, routing."""
    lines = [
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        # an ACME challenge is answered here, before any redirect or app, for every hostname (RFC 8555 8.3)
        f"    http-request set-var(txn.acme) path,map({paths.acme_map}) if {{ path_beg {ACME_CHALLENGE_PATH} }}",
        '    http-request return status 200 content-type text/plain lf-string "%[var(txn.acme)]"'
        " if { var(txn.acme) -m found }",
    ]
    if scheme == "http" and https_port:
        # the Location is built here rather than by `redirect scheme`, which would keep the HTTP port
        port = "" if https_port == 443 else f":{https_port}"
        lines.append(
            f"    http-request redirect code 308 location https://%[var(txn.host)]{port}%[pathq]"
            f" if {{ var(txn.host),map({paths.redirect_map}) -m found }} !{{ path_beg {ACME_CHALLENGE_PATH} }}"
        )
    lines += [
        # an app in maintenance: its page with 503 and Retry-After from here, its processes untouched; after the
        # ACME answer (certificates keep renewing) and the HTTPS redirect
        f"    http-request set-var(txn.maintenance) var(txn.host),map({paths.maintenance_map})",
        f'    http-request return status 503 content-type "text/html; charset=utf-8"'
        f" hdr Retry-After {MAINTENANCE_RETRY_AFTER} hdr Cache-Control no-store"
        ' lf-string "%[var(txn.maintenance),b64dec]" if { var(txn.maintenance) -m found }',
        # the app learns the scheme from the router alone: a client's own header is replaced
        f"    http-request set-header X-Forwarded-Proto {scheme}",
        # the app may already have acted on a POST it dropped; only a refused connection is safe to retry then
        "    http-request disable-l7-retry unless METH_GET || METH_OPTIONS",
    ]
    if scheme == "https":
        lines.append(
            f'    http-response set-header Strict-Transport-Security "{HSTS_VALUE}"'
            f" if {{ var(txn.host),map({paths.hsts_map}) -m found }}"
        )
    if dashboard_host:
        lines.append(f"    use_backend {WEB_BACKEND} if {{ var(txn.host) -m str {dashboard_host} }}")
    lines += [
        f"    use_backend %[var(txn.host),map({paths.hosts_map})]",
        "    default_backend unknown_host",
    ]
    return lines


def request_log_lines(paths: RouterPaths) -> list[str]:
    """Per-request timing lines to the metrics collector's socket (datagrams: HAProxy never waits on a reader).
    Left out when the socket's path is too long for a unix address, so the router still starts."""
    if len(str(paths.request_log)) > UNIX_PATH_MAX:
        log.warning("router: %s is too long for a unix socket: no per-request latency", paths.request_log)
        return []
    return [
        f"    log unix@{paths.request_log} len {REQUEST_LOG_MAX_BYTES} format raw local0 info",
        f'    log-format "{REQUEST_LOG_FORMAT}"',
        # the request id of the access line, also sent to the app (as Heroku's router does)
        "    unique-id-format %[uuid()]",
        "    unique-id-header X-Request-ID",
    ]


def render_config(
    *,
    http_port: int,
    admin_socket: Path,
    paths: RouterPaths,
    backends: int = BACKEND_SLOTS,
    servers: int = SERVER_SLOTS,
    https_port: int = 0,
    dashboard_host: str = "",
    web_port: int = 8000,
) -> str:
    lines = [
        "global",
        "    master-worker",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 2m",
        "    maxconn 4096",  # fits the default fd limit (ulimit -n) without raising it
        # written just before a reload so the new worker starts with the servers the old one had
        f"    server-state-file {paths.server_state}",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        # after a reload the old worker answers each keep-alive connection's next request with "Connection:
        # close" instead of closing it idle, which races a request the client is sending (a plain client that
        # reuses its connection after a pause fails on it). No close-spread-time: it makes HAProxy 2.6 close idle
        # connections over its window even so (measured by bench/router_growth.py: 1 failed per reload with it)
        "    option idle-close-on-response",
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
        *request_log_lines(paths),
        "",
        "frontend http",
        f"    bind :{http_port}",
        *frontend_rules(scheme="http", paths=paths, https_port=https_port, dashboard_host=dashboard_host),
    ]
    if https_port:
        lines += [
            "",
            "frontend https",
            # the default certificate first (the one a client naming no known hostname gets), then the crt-list
            # the runtime API changes; no strict-sni. http/1.1 only: WebSockets upgrade as over plain HTTP.
            f"    bind :{https_port} ssl crt {paths.default_certificate} crt-list {paths.crt_list}"
            " alpn http/1.1",
            *frontend_rules(
                scheme="https", paths=paths, https_port=https_port, dashboard_host=dashboard_host
            ),
        ]
    lines += [
        "",
        "backend unknown_host",
        f"    http-request return status 404 content-type text/html file {paths.not_found_page}",
    ]
    if dashboard_host:
        lines += [
            "",
            f"backend {WEB_BACKEND}",  # Berth's own web process (dashboard and API) on this node
            f"    server web 127.0.0.1:{web_port}",
        ]
    for slot in range(1, backends + 1):
        lines += [
            "",
            f"backend {backend_name(slot)}",
            "    balance roundrobin",  # a dynamic algorithm: HAProxy adds servers at run time only with one
            f"    default-server init-addr none {SERVER_OPTIONS}",
            f"    server-template s 1-{servers} 127.0.0.1:1 disabled",
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
    https_port: int | None = None,
    dashboard_host: str | None = None,
    web_port: int | None = None,
) -> RouterPaths:
    """Write haproxy.cfg (and empty maps and a default certificate if none are kept yet) into the router directory.

    Slot counts default to the ones recorded in slots.json, so a restarted router is as large as it had grown.
    The HTTPS port defaults to BERTH_HTTPS_PORT, except for a router given its own HTTP port (a test's or a
    benchmark's, on a free port): that one has HTTPS only when given an HTTPS port too, never the machine's 443.
    The crt-list keeps only certificates whose files can be read, so HAProxy always starts.
    """
    paths = RouterPaths(Path(directory or settings.BERTH_ROUTER_DIR))
    paths.directory.mkdir(parents=True, exist_ok=True)
    for map_file in (
        paths.hosts_map,
        paths.acme_map,
        paths.redirect_map,
        paths.hsts_map,
        paths.maintenance_map,
    ):
        if not map_file.exists():
            map_file.write_text("")
    paths.not_found_page.write_text(NOT_FOUND_BODY)
    write_default_certificate(paths)
    readable = set(readable_crt_list(paths))
    lines = [line for line in read_crt_list_lines(paths) if line.split()[0] in readable]
    write_atomically(paths.crt_list, "".join(f"{line}\n" for line in lines))
    if https_port is None:
        https_port = settings.BERTH_HTTPS_PORT if http_port is None else 0
    if dashboard_host is None:
        dashboard_host = settings.BERTH_DASHBOARD_HOST
    if dashboard_host:
        dashboard_host = clean_dashboard_host(dashboard_host)
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
            "https_port": https_port,
            "dashboard_host": dashboard_host,
            "web_port": web_port or settings.BERTH_WEB_PORT,
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
        # absent from a record written before HTTPS: no HTTPS frontend, as that router had
        "https_port": config.get("https_port", 0),
        "dashboard_host": config.get("dashboard_host", ""),
        "web_port": config.get("web_port", 8000),
    }


def clean_dashboard_host(hostname: str) -> str:
    """BERTH_DASHBOARD_HOST goes into the configuration as a word: a hostname or nothing."""
    try:
        return clean_hostnames([hostname])[0]
    except ValueError:
        raise RouterRefused(f"BERTH_DASHBOARD_HOST is not a hostname: {hostname!r}") from None


def write_default_certificate(paths: RouterPaths) -> None:
    """A self-signed certificate the HTTPS frontend starts with (HAProxy needs one) and serves to clients naming
    no hostname Berth has a certificate for. Made once per router directory; kept 0600 (it holds its key)."""
    if paths.default_certificate.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Berth default certificate")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    write_private(paths.default_certificate, pem.decode())


def write_private(path: Path, text: str) -> None:
    """write_atomically for a file holding a private key: 0600 from its first byte, in a 0700 folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def read_map_file(path: Path) -> dict[str, str]:
    """A map file of one `key value` a line (Berth writes them: no comments, no spaces in keys or values)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)


def write_map_file(path: Path, entries: dict[str, str]) -> None:
    write_atomically(path, "".join(f"{key} {value}\n" for key, value in sorted(entries.items())))


def read_crt_list(paths: RouterPaths) -> list[str]:
    """The certificate files the crt-list names, in order."""
    return [line.split()[0] for line in read_crt_list_lines(paths)]


def read_crt_list_lines(paths: RouterPaths) -> list[str]:
    """The crt-list's lines as written: a certificate file, then the SNI names it is limited to, if any."""
    try:
        text = paths.crt_list.read_text()
    except FileNotFoundError:
        return []
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def crt_list_line(path: Path | str, sni_filters: Iterable[str] = ()) -> str:
    """One crt-list line: the file, then the only names (SNI) it answers for; none: the names it holds."""
    return " ".join([str(path), *sni_filters])


def readable_crt_list(paths: RouterPaths) -> list[str]:
    """read_crt_list without the files that are gone or cannot be read: one of them would stop HAProxy starting."""
    kept = []
    for path in read_crt_list(paths):
        try:
            served_from_pem(name=Path(path).stem, pem=Path(path).read_text())
        except (OSError, RouterRefused) as exc:
            log.error("router: %s left out of the crt-list: %s", path, exc)
            continue
        kept.append(path)
    return kept


def haproxy_command(paths: RouterPaths) -> list[str]:
    # -W master-worker, -db stays in the foreground (honcho/systemd supervise it), -S the master CLI
    return ["haproxy", "-W", "-db", "-f", str(paths.config), "-S", f"{paths.master_socket},mode,600"]


def admin_command(
    command: str, *, socket_path: Path | None = None, timeout: float = 2.0, payload: str | None = None
) -> str:
    """Send one command to HAProxy's admin socket (or its master socket) and return its answer.

    With a payload (a PEM bundle for `set ssl cert`), the command is sent as `<command> <<` followed by the payload's
    lines and the empty line that ends it; the payload must have no empty line of its own.
    """
    path = socket_path or settings.BERTH_ROUTER_ADMIN_SOCKET
    message = command.encode() + b"\n"
    if payload is not None:
        lines = payload.strip("\n").split("\n")
        if any(not line.strip() for line in lines):
            raise ValueError("an admin socket payload cannot hold an empty line: it would end the payload")
        message = command.encode() + b" <<\n" + "\n".join(lines).encode() + b"\n\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(message)
        # the master CLI answers only once the client has finished sending
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")

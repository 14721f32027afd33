"""Request figures per app from the router: rate and 5xx from HAProxy's counters, p95 latency from its log.

Rate and 5xx come from `show stat` on the admin socket (per backend: req_tot and hrsp_5xx, cumulative; the delta
between two reads over the seconds between them). They are exact even when log lines are lost. The p95 comes
from the one line per request HAProxy sends to a unix datagram socket in the router's folder
(`RouterPaths.request_log`, format `haproxy.REQUEST_LOG_FORMAT`: backend, status, ms), which `RequestLog` binds
and reads in a thread. Datagrams never make HAProxy wait: with this process down or slow, lines are dropped
and the router serves on; no reload is ever needed. A backend slot maps to its app through slots.json.
"""

import logging
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from berth.observe.services import log_entries_append, now_iso
from berth.routing.haproxy import REQUEST_LOG_MAX_BYTES, RouterPaths, admin_command, read_slots

logger = logging.getLogger(__name__)

TIMES_PER_WINDOW = 5_000  # request times kept per backend and window; past it a uniform sample (reservoir)
ROUTED_PROCESS = "web"  # the one process type the router sends requests to
ROUTER_PROCESS = "router"  # the process (and instance) name of router access lines in an app's log
ACCESS_BUFFER = 20_000  # access lines held between two writes at most; past it they are dropped and counted
ACCESS_FLUSH = 0.5  # seconds between two writes of access lines into the apps' logs
PATH_MAX = 512  # characters of a path an access line keeps
OWNERS_TTL = 2.0  # seconds the backend -> app map is reused before slots.json is read again
# the quoted tail of a request-log line: host and path, with HAProxy's \" and \\ escapes
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?')
# HAProxy's termination state (first letter: who ended the session; second: in which phase) -> Heroku-like codes
ROUTER_ERRORS = {
    "s": ("H12", "Request timeout"),
    "S": ("H13", "Connection closed without response"),
    "C": ("H27", "Client Request Interrupted"),
    "c": ("H28", "Client Connection Idle"),
}


def access_parse(line: str) -> dict[str, str] | None:
    """A request-log line (haproxy.REQUEST_LOG_FORMAT) as named fields; None for one of another shape."""
    head = line.split(" ", 11)
    if len(head) < 12:
        return None
    names = ("backend", "status", "total", "connect", "service", "bytes", "state", "tls", "server")
    fields = dict(zip(names, head[:9], strict=True))
    fields["method"], fields["request_id"] = head[9], head[10]
    quoted = [re.sub(r"\\(.)", r"\1", m) for m in _QUOTED.findall(head[11])]
    fields["host"] = quoted[0] if quoted else ""
    fields["path"] = quoted[1] if len(quoted) > 1 else ""
    return fields


def _ms(value: str) -> str:
    return f"{value}ms" if value.lstrip("-").isdigit() and not value.startswith("-") else "-"


def access_line(fields: dict[str, str]) -> str:
    """An access line as Heroku's router prints one: at=info for an answer below 500, at=error with a code for a
    5xx, a timeout or an interrupted request (H12 timeout, H13 closed without answer, H14 no server, H27/H28
    client gone, H500 the app's own 5xx)."""
    status = fields["status"]
    state = fields["state"]
    code = desc = ""
    if fields["server"] in ("<NOSRV>", "-") and status.startswith("5"):
        code, desc = "H14", "No web processes running"
    elif state[:1] in ROUTER_ERRORS and state[:1] != "-":
        code, desc = ROUTER_ERRORS[state[:1]]
    elif status.startswith("5"):
        code, desc = "H500", "App error"
    path = fields["path"][:PATH_MAX].replace("\\", "\\\\").replace('"', '\\"')
    host = fields["host"].replace(" ", "%20") or "-"
    parts = ["at=error", f"code={code}", f'desc="{desc}"'] if code else ["at=info"]
    parts += [
        f"method={fields['method']}",
        f'path="{path}"',
        f"host={host}",
        f"request_id={fields['request_id']}",
        f"status={status}",
        f"bytes={fields['bytes']}",
        f"connect={_ms(fields['connect'])}",
        f"service={_ms(fields['service'])}",
        f"upstream={fields['server']}",
        f"protocol={'https' if fields['tls'] == '1' else 'http'}",
    ]
    return " ".join(parts)


def p95(times: list[int]) -> float | None:
    """The 95th percentile (nearest rank) of request times in ms."""
    if not times:
        return None
    ordered = sorted(times)
    return float(ordered[max(0, -(-95 * len(ordered) // 100) - 1)])


class RequestLog:
    """Binds the router's request-log socket and keeps the times of each backend's requests until `take`."""

    def __init__(self, path: Path, *, owners: Callable[[], dict[str, str]] | None = None):
        self.path = path
        self.lock = threading.Lock()
        self.times: dict[str, list[int]] = {}
        self.seen: dict[str, int] = {}
        self.lines = 0
        # access lines go into the apps' logs when the backend -> app map is known (None: timing only)
        self.owners = owners
        self.owners_read: tuple[float, dict[str, str]] = (0.0, {})
        self.access: deque[tuple[str, dict[str, str]]] = deque()
        self.access_dropped = 0
        self.access_written = 0
        self.flushed_at = time.monotonic()
        self.stopping = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.unlink(path)  # a socket left by a killed run: bind would fail on it
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self.run, name="request-log", daemon=True)

    def start(self) -> "RequestLog":
        self.thread.start()
        return self

    def add(self, line: str) -> None:
        parts = line.split(" ", 3)
        if len(parts) < 3:
            return
        backend, _status, ms = parts[:3]
        if self.owners is not None and len(parts) == 4:
            fields = access_parse(line)
            if fields is not None:
                with self.lock:
                    if len(self.access) < ACCESS_BUFFER:
                        self.access.append((now_iso(), fields))
                    else:
                        self.access_dropped += 1
        try:
            total = int(ms)
        except ValueError:
            return
        if total < 0:
            return  # -1: the request was aborted before an answer; the counters still count it
        with self.lock:
            self.lines += 1
            times = self.times.setdefault(backend, [])
            seen = self.seen[backend] = self.seen.get(backend, 0) + 1
            if len(times) < TIMES_PER_WINDOW:
                times.append(total)
            else:
                slot = random.randrange(seen)
                if slot < TIMES_PER_WINDOW:
                    times[slot] = total

    def run(self) -> None:
        while not self.stopping.is_set():
            if time.monotonic() - self.flushed_at >= ACCESS_FLUSH:
                self.flush_access()
            try:
                data = self.sock.recv(REQUEST_LOG_MAX_BYTES + 64)
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                logger.exception("request log read failed")
                time.sleep(1)
                continue
            self.add(data.decode(errors="replace").strip())
        self.flush_access()

    def _owners(self) -> dict[str, str]:
        read_at, owners = self.owners_read
        if self.owners is not None and time.monotonic() - read_at >= OWNERS_TTL:
            owners = self.owners()
            self.owners_read = (time.monotonic(), owners)
        return owners

    def flush_access(self) -> int:
        """Write the access lines received since the last flush into their apps' logs (source `router`), in one
        round trip per app. Each app's log stays capped (BERTH_LOG_RETENTION_LINES), so however much traffic an
        app gets its log in Redis does not grow past the cap; lines of a backend no app owns are dropped."""
        self.flushed_at = time.monotonic()
        with self.lock:
            taken, self.access = self.access, deque()
        if not taken:
            return 0
        try:
            owners = self._owners()
            per_app: dict[str, list[dict[str, str]]] = {}
            for ts, fields in taken:
                app = owners.get(fields["backend"])
                if app is None:
                    continue
                per_app.setdefault(app, []).append(
                    {
                        "ts": ts,
                        "process": ROUTER_PROCESS,
                        "instance": ROUTER_PROCESS,
                        "stream": ROUTER_PROCESS,
                        "line": access_line(fields),
                    }
                )
            for app, entries in per_app.items():
                log_entries_append(app=app, entries=entries)
                self.access_written += len(entries)
        except Exception:  # Redis down or slots.json unreadable: these lines are lost, the timings are not
            logger.exception("router access lines not written")
            self.access_dropped += len(taken)
            return 0
        return len(taken)

    def take(self) -> dict[str, list[int]]:
        """The times logged since the last take, by backend."""
        with self.lock:
            times, self.times, self.seen = self.times, {}, {}
        return times

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def backend_counters(admin_socket: Path) -> dict[str, tuple[int, int]]:
    """(requests, 5xx answers) so far of each backend, from `show stat`."""
    text = admin_command("show stat", socket_path=admin_socket)
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeError(f"unexpected answer to show stat: {text[:200]!r}")
    header = lines[0][2:].split(",")
    name, kind = header.index("pxname"), header.index("svname")
    requests, sessions, errors = header.index("req_tot"), header.index("stot"), header.index("hrsp_5xx")
    counters = {}
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) < len(header) - 1 or fields[kind] != "BACKEND":
            continue
        total = fields[requests] or fields[sessions]
        counters[fields[name]] = (int(total or 0), int(fields[errors] or 0))
    return counters


class Traffic:
    """Per app request rate, 5xx rate and p95 latency between two calls of `window`."""

    def __init__(self, *, paths: RouterPaths, admin_socket: Path):
        self.paths = paths
        self.admin_socket = admin_socket
        self.request_log = RequestLog(paths.request_log, owners=self.backend_apps)
        self.previous: dict[str, tuple[int, int]] = {}
        self.owners: dict[str, str] = {}
        self.read_at: float | None = None

    def start(self) -> "Traffic":
        self.request_log.start()
        try:
            self.previous = backend_counters(self.admin_socket)
            self.read_at = time.monotonic()
        except OSError:
            logger.warning("router not answering yet: request figures start with its first answer")
        return self

    def backend_apps(self) -> dict[str, str]:
        apps = read_slots(self.paths).get("apps", {})
        return {record["backend"]: app for app, record in apps.items() if "backend" in record}

    def window(self) -> dict[str, dict[str, float | None]]:
        """{app: {"rps", "e5xx", "p95"}} since the previous call: the apps the router routes to."""
        times = self.request_log.take()
        try:
            counters = backend_counters(self.admin_socket)
        except (OSError, RuntimeError):
            logger.warning("request counters not read: router down?", exc_info=True)
            return {}
        now = time.monotonic()
        elapsed = now - self.read_at if self.read_at is not None else None
        owners = self.backend_apps()
        result = {}
        for backend, app in owners.items():
            total, errors = counters.get(backend, (0, 0))
            before = self.previous.get(backend)
            if before is None or elapsed is None or self.owners.get(backend) != app:
                rps = e5xx = None  # no baseline yet (or the slot changed hands): the next window has one
            else:
                # counters that went back: HAProxy restarted or reloaded; its new counters are all since then
                delta = total - before[0] if total >= before[0] else total
                delta_errors = errors - before[1] if errors >= before[1] else errors
                rps, e5xx = delta / elapsed, delta_errors / elapsed
            result[app] = {"rps": rps, "e5xx": e5xx, "p95": p95(times.get(backend, []))}
        self.previous, self.read_at, self.owners = counters, now, owners
        return result

    def stop(self) -> None:
        self.request_log.stop()

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
import socket
import threading
import time
from pathlib import Path

from berth.routing.haproxy import RouterPaths, admin_command, read_slots

logger = logging.getLogger(__name__)

TIMES_PER_WINDOW = 5_000  # request times kept per backend and window; past it a uniform sample (reservoir)
ROUTED_PROCESS = "web"  # the one process type the router sends requests to


def p95(times: list[int]) -> float | None:
    """The 95th percentile (nearest rank) of request times in ms."""
    if not times:
        return None
    ordered = sorted(times)
    return float(ordered[max(0, -(-95 * len(ordered) // 100) - 1)])


class RequestLog:
    """Binds the router's request-log socket and keeps the times of each backend's requests until `take`."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.times: dict[str, list[int]] = {}
        self.seen: dict[str, int] = {}
        self.lines = 0
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
        parts = line.split()
        if len(parts) != 3:
            return
        backend, _status, ms = parts
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
            try:
                data = self.sock.recv(512)
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                logger.exception("request log read failed")
                time.sleep(1)
                continue
            self.add(data.decode(errors="replace").strip())

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
        self.request_log = RequestLog(paths.request_log)
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

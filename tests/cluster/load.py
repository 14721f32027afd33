"""Bounded keep-alive load through the cluster's router (it listens in the manager's namespace, so at the
manager's address, not 127.0.0.1 as tests/e2e/load.py assumes), with the time of every failure kept so a test can
split them at the moment the router marked a node down."""

import threading
import time
from collections import Counter

import httpx

from tests.conftest import NO_TLS


class TimedLoad:
    def __init__(
        self,
        address: str,
        port: int,
        host: str,
        threads: int = 4,
        max_seconds: float = 150,
        max_requests: int = 300_000,
        timeout: float = 40,
    ):
        self.url, self.host, self.timeout = f"http://{address}:{port}", host, timeout
        self.ok = 0
        self.failures: list[tuple[float, str]] = []  # (monotonic time, what)
        self.served_by: Counter[str] = Counter()
        self.first_served: dict[str, float] = {}  # task id (X-Task) -> monotonic time its first answer ended
        self.slowest = 0.0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._max = max_requests
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.url, headers={"Host": self.host}, timeout=self.timeout, verify=NO_TLS
        ) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline and self.total < self._max:
                started = time.monotonic()
                try:
                    response = client.get("/")
                    good, text = response.status_code == 200, response.text.strip()
                    task = response.headers.get("X-Task")
                    if not good:
                        text = f"HTTP {response.status_code}: {text[:100]}"
                except httpx.HTTPError as exc:
                    good, text, task = False, repr(exc)[:200], None
                ended = time.monotonic()
                with self._lock:
                    self.slowest = max(self.slowest, ended - started)
                    if good:
                        self.ok += 1
                        self.served_by[text] += 1
                        if task:
                            self.first_served.setdefault(task, ended)
                    else:
                        self.failures.append((started, text))

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.served_by)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)

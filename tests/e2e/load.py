"""Bounded keep-alive HTTP load through the router, counting every failed request."""

import threading
import time

import httpx

from tests.conftest import NO_TLS


class Load:
    """Keep-alive GETs through the router from a few threads, bounded in time and count; counts failures."""

    def __init__(
        self, port: int, host: str, threads: int = 4, max_seconds: float = 120, max_requests: int = 200_000
    ):
        self.port, self.host = port, host
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.bodies: set[str] = set()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._max = max_requests
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        with httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Host": self.host}, timeout=10, verify=NO_TLS
        ) as client:
            while (
                not self._stop.is_set()
                and time.monotonic() < self._deadline
                and self.ok + self.failed < self._max
            ):
                try:
                    response = client.get("/")
                    good = response.status_code == 200
                    text = response.text.strip()
                except httpx.HTTPError as exc:
                    good, text = False, repr(exc)
                with self._lock:
                    if good:
                        self.ok += 1
                        self.bodies.add(text)
                    else:
                        self.failed += 1
                        self.errors.append(text[:200])

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

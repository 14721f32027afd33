"""Berth's own readiness check of a task, from the host: does something answer HTTP on its published port?

Any status below 500 counts as ready (a 404 or a redirect means the app is up and routing). A connection that is
accepted and then dropped is not ready: with host-mode publishing Docker's proxy accepts on the published port even
when nothing in the container listens yet.
"""

import http.client
import time
from collections.abc import Callable


def http_probe(address: str, port: int, path: str = "/", timeout: float = 2.0) -> int | None:
    """One GET; the status code, or None when nothing answered HTTP."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "berth-health", "Connection": "close"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):  # timeouts and resets are OSErrors
        return None
    finally:
        connection.close()


def http_ready(
    address: str,
    port: int,
    path: str = "/",
    timeout: float = 10.0,
    interval: float = 0.25,
    still_worth_it: Callable[[], bool] | None = None,
) -> bool:
    """Probe until a status below 500 comes back (True) or `timeout` seconds pass (False).

    `still_worth_it`, asked about once a second, ends the wait early (False) when it says no: e.g. the task
    exited, and no answer will ever come from this port."""
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 1.0
    while True:
        if still_worth_it is not None and time.monotonic() >= next_check:
            if not still_worth_it():
                return False
            next_check = time.monotonic() + 1.0
        remaining = deadline - time.monotonic()
        status = http_probe(address, port, path, timeout=max(0.1, min(2.0, remaining)))
        if status is not None and status < 500:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))

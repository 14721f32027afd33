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


# the body read of a startup check, enough for its `content` (a health page is small)
MAX_CHECK_BODY = 64 * 1024


def http_get(address: str, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int | None, bytes]:
    """One GET; the status code (None when nothing answered HTTP) and up to MAX_CHECK_BODY bytes of the body."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "berth-health", "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read(MAX_CHECK_BODY)
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        connection.close()


def startup_check(
    address: str,
    port: int,
    *,
    path: str,
    attempts: int,
    timeout: float,
    wait: float,
    initial_delay: float = 0,
    content: str = "",
    still_worth_it: Callable[[], bool] | None = None,
) -> tuple[bool, str]:
    """A startup check as Dokku's app.json declares one: after `initial_delay` seconds, up to `attempts` GETs of
    `path` (each `timeout` seconds, `wait` seconds apart) until one answers 2xx or 3xx with `content` in its body.
    Returns whether it passed and, when not, what the last attempt got. `still_worth_it` (a task that exited never
    answers) is asked before each attempt."""
    time.sleep(initial_delay)
    outcome = "no attempt"
    for attempt in range(1, attempts + 1):
        if still_worth_it is not None and not still_worth_it():
            return False, outcome
        status, body = http_get(address, port, path, timeout=timeout)
        if status is None:
            outcome = "nothing answered HTTP"
        elif not 200 <= status < 400:
            outcome = f"status {status}"
        elif content and content.encode() not in body:
            outcome = f"status {status} without {content!r} in the body"
        else:
            return True, f"status {status}"
        if attempt < attempts:
            time.sleep(wait)
    return False, outcome

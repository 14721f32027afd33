"""Small reads for the deploy tests: what answers where, and where an event sits in the journal."""

import http.client
import threading


def answer(address: str, port: int) -> str | None:
    """The body an endpoint answers GET / with, or None when nothing answers there."""
    connection = http.client.HTTPConnection(address, port, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    except OSError:
        return None
    finally:
        connection.close()


def endpoints(scheduler, app, *, release: int, process: str = "web") -> set[tuple[str, int]]:
    return {
        (task.node_address, task.published_port)
        for task in scheduler.tasks(app=app.name, release=release, process=process)
        if task.running and task.published_port
    }


def position(journal: list[tuple], entry: tuple) -> int:
    """Where `entry` first appears in the journal (a failure names the journal when it is not there)."""
    assert entry in journal, f"{entry} not in {journal}"
    return journal.index(entry)


def route_to(journal: list[tuple], app, wanted: set[tuple[str, int]]) -> int:
    """Where the router was first told to send `app` to exactly `wanted`."""
    for index, entry in enumerate(journal):
        if entry[0] == "route" and entry[1] == app.name and {(e.address, e.port) for e in entry[2]} == wanted:
            return index
    raise AssertionError(f"the router never got {app.name} -> {sorted(wanted)}: {journal}")


def retirements_finish(timeout: float = 10) -> None:
    """Wait (bounded) for the roll-out's background removals of replaced releases (threads named `retire …`)."""
    for thread in threading.enumerate():
        if thread.name.startswith("retire "):
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still runs after {timeout}s"

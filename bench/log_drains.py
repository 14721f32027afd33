"""Benchmark: a log drain whose receiver is down for a while, the app logging throughout.

    .venv/bin/python bench/log_drains.py [--down 60] [--rate 20] [--small-cap 500]

Starts, on a throwaway BERTH_HOME with SQLite and the Redis database of BENCH_REDIS_URL (default 15): the log
shipper (`manage.py ship_logs --no-metrics`, following no container: only its companion loop, the drain forwarder,
matters here) as a process of its own, a syslog receiver over TCP on 127.0.0.1 (tests/drains/receivers.py), and an
app with a drain to it. Lines go into the app's log stream at `--rate` a second (as the shipper writes an app's
output), then:

1. the receiver is stopped for `--down` seconds and started again on the same port: lines logged meanwhile,
   delivered after, dropped, and the time from its return until every line logged so far has arrived;
2. the same with the app's log capped at `--small-cap` lines (BERTH_LOG_RETENTION_LINES): the lines the cap
   trimmed before they could be sent are counted as dropped, and delivered + dropped = logged.

Every loop is bounded in count and time; the shipper is stopped by PID and the app's Redis keys deleted at the end.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "platform"), str(REPO), str(REPO / "bench")]

from common import figure, print_table, save_figures, tree_memory_mb  # noqa: E402

PYTHON = REPO / ".venv/bin/python"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
BUDGET_S = 120  # no wait for lines lasts longer than this


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Writer(threading.Thread):
    """Appends numbered lines to the app's log at `rate` a second until stopped (at most `limit` lines)."""

    def __init__(self, app: str, rate: float, limit: int):
        super().__init__(daemon=True)
        self.app, self.rate, self.limit = app, rate, limit
        self.count = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        # Berth's modules are imported once main() has run django.setup(), here and below
        from berth.observe.services import log_entries_append, now_iso

        start = time.monotonic()
        while not self.stopping.is_set() and self.count < self.limit:
            delay = start + self.count / self.rate - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
            entry = {"ts": now_iso(), "process": "web", "instance": "web.1", "stream": "stdout"}
            log_entries_append(app=self.app, entries=[{**entry, "line": f"n={self.count}"}])
            self.count += 1


def scenario(*, app, url_port: int, down: float, rate: float, receiver_cls) -> dict:
    """One outage: the receiver down `down` seconds while the app logs; figures of what followed."""
    from berth.drains.models import Drain
    from berth.drains.services import drain_add

    receiver = receiver_cls(port=url_port).start()
    drain = drain_add(app=app, url=f"syslog://127.0.0.1:{receiver.port}")
    writer = Writer(app.name, rate, limit=int((down + 3 * BUDGET_S) * rate))
    writer.start()
    try:
        if not wait(lambda: len(receiver.messages) >= rate * 2, 30):
            raise RuntimeError(
                "the forwarder in ship_logs sends nothing (is its lease held by another shipper?)"
            )
        receiver.stop()
        received_before = len(receiver.messages)
        time.sleep(down)
        logged_while_down = writer.count
        receiver = receiver_cls(port=receiver.port).start()
        back = time.monotonic()
        caught = wait(
            lambda: (lambda d: d.delivered + d.dropped >= logged_while_down)(Drain.objects.get(pk=drain.pk)),
            BUDGET_S,
        )
        catch_up = time.monotonic() - back if caught else None
        writer.stopping.set()
        writer.join(10)
        wait(lambda: (lambda d: d.delivered + d.dropped >= writer.count)(Drain.objects.get(pk=drain.pk)), 30)
        time.sleep(0.5)
        drain.refresh_from_db()
        received = received_before + len(receiver.messages)  # by the receiver before and after its outage
    finally:
        writer.stopping.set()
        receiver.stop()
    return {
        "logged": writer.count,
        "logged_down": logged_while_down,
        "delivered": drain.delivered,
        "received": received,
        "dropped": drain.dropped,
        "catch_up": catch_up,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=60.0, help="seconds the receiver is down")
    parser.add_argument("--rate", type=float, default=20.0, help="lines the app logs a second")
    parser.add_argument("--small-cap", type=int, default=500, help="the log's cap in the second scenario")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="berth-bench-drains-"))
    os.environ.update(
        {
            "BERTH_HOME": str(home),
            "BERTH_SECRET_KEY": "bench",
            "BERTH_LOG_LEVEL": "WARNING",
            "REDIS_URL": REDIS_URL,
            "BERTH_WEBHOOKS_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
            "DJANGO_SETTINGS_MODULE": "berth.config.settings",
            "PYTHONPATH": str(REPO / "platform"),
        }
    )
    os.environ.pop("DATABASE_URL", None)
    subprocess.run([str(PYTHON), "manage.py", "migrate", "-v", "0"], cwd=REPO, check=True, timeout=300)

    import django

    django.setup()
    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from berth.core.redis import redis_client
    from berth.observe.services import events_key, logs_key
    from django.contrib.auth import get_user_model

    from tests.drains.receivers import SyslogReceiver

    owner = get_user_model().objects.create_user(username="bench", password="pw-123456")
    team = team_create(name="bench", actor=owner)
    apps = [app_create(team=team, name=f"drain-{uuid.uuid4().hex[:8]}", actor=owner) for _ in range(2)]
    rds = redis_client()
    rds.delete("berth:drains:forwarder")  # a lease left by a killed run's shipper (it would hold it 15 s)
    shipper = subprocess.Popen(
        [
            str(PYTHON),
            "manage.py",
            "ship_logs",
            "--no-metrics",
            "--only-label",
            f"org.berth.bench={uuid.uuid4().hex}",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(home / "ship_logs.log").open("w"),
    )
    rows, figures = [], []
    try:
        for app, cap in ((apps[0], None), (apps[1], args.small_cap)):
            if cap is not None:
                # the shipper process reads the cap too (its writes trim by it): the writer here is what trims
                os.environ["BERTH_LOG_RETENTION_LINES"] = str(cap)
            result = scenario(
                app=app, url_port=0, down=args.down, rate=args.rate, receiver_cls=SyslogReceiver
            )
            label = f"cap {cap} lines" if cap else "cap 10,000 (default)"
            rows.append(
                [
                    label,
                    round(args.down),
                    result["logged_down"],
                    result["logged"],
                    result["delivered"],
                    result["received"],
                    result["dropped"],
                    result["catch_up"] if result["catch_up"] is not None else "never",
                ]
            )
            key = "default_cap" if cap is None else "small_cap"
            figures += [
                figure(
                    f"drain {key}: lost after {args.down:.0f} s down",
                    [result["logged"] - result["delivered"] - result["dropped"]],
                    "lines",
                    goal="0 unaccounted",
                    limit=0,
                ),
                figure(f"drain {key}: dropped", [result["dropped"]], "lines"),
                figure(f"drain {key}: catch-up after the receiver is back", [result["catch_up"]], "s"),
            ]
        memory = tree_memory_mb(shipper.pid)
        figures.append(figure("ship_logs with the drain forwarder: RSS", [memory["rss_mb"]], "MB"))
    finally:
        shipper.send_signal(signal.SIGTERM)
        try:
            shipper.wait(timeout=20)
        except subprocess.TimeoutExpired:
            shipper.kill()
        for app in apps:
            rds.delete(logs_key(app.name), events_key(app.name))
    print_table(
        f"Log drain, receiver down {args.down:.0f} s while the app logs {args.rate:g} lines/s "
        "(forwarder inside ship_logs, syslog over TCP on 127.0.0.1)",
        ["LOG CAP", "DOWN S", "LOGGED BY RETURN", "LOGGED", "DELIVERED", "RECEIVED", "DROPPED", "CATCH-UP S"],
        rows,
    )
    print(f"ship_logs RSS: {memory['rss_mb']:.0f} MB")
    save_figures("log_drains", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

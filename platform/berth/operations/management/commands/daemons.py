import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from berth.observe.metrics import SAMPLE_INTERVAL
from berth.observe.shipper import SCAN_INTERVAL
from berth.operations.daemons import daemons_run


class Command(BaseCommand):
    help = (
        "Run Berth's singleton loops in one process: the service-discovery watcher (`watch`), the log shipper with "
        "its metrics sampler (`ship_logs`) and beat's clock (Celery beat). Runs until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--schedule",
            default=None,
            help="beat's schedule file (default: BERTH_HOME/celerybeat-schedule, as deploy/Procfile had it)",
        )
        parser.add_argument("--scan-interval", type=float, default=SCAN_INTERVAL)
        parser.add_argument("--sample-interval", type=float, default=SAMPLE_INTERVAL)
        parser.add_argument(
            "--only-label",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="ship the logs only of containers that also carry this label (tests on a shared engine)",
        )

    def handle(self, *args, **options):
        stop = threading.Event()
        # the main thread only waits: SIGTERM (respawn.sh, systemd) and Ctrl-C both end in a clean stop
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        ended = daemons_run(
            stop=stop,
            schedule_path=options["schedule"] or settings.BERTH_HOME / "celerybeat-schedule",
            lock_path=settings.BERTH_HOME / "daemons.lock",
            scan_interval=options["scan_interval"],
            sample_interval=options["sample_interval"],
            only_labels=dict(item.partition("=")[::2] for item in options["only_label"]),
            say=say,
        )
        if ended:
            raise CommandError(f"{', '.join(ended)} ended on its own; the other loops were stopped")
        say("daemons: stopped")

import signal
import threading

from django.conf import settings
from django.core.management.base import CommandError

from berth.core.management.daemon import DaemonCommand
from berth.observe.management.options import only_labels, shipper_arguments
from berth.operations.daemons import daemons_run


class Command(DaemonCommand):
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
        shipper_arguments(parser)

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
            only_labels=only_labels(options["only_label"]),
            say=say,
        )
        if ended:
            raise CommandError(f"{', '.join(ended)} ended on its own; the other loops were stopped")
        say("daemons: stopped")

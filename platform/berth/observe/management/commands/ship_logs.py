import signal
import threading

from berth.core.management.daemon import DaemonCommand
from berth.observe.management.options import only_labels, shipper_arguments
from berth.observe.metrics import Sampler, router_traffic
from berth.observe.shipper import COMPANIONS, Shipper


class Command(DaemonCommand):
    help = (
        "Ship the logs of this node's app containers into Redis (exactly once, resuming after a restart) and "
        "sample their health and metrics. Runs until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-metrics", action="store_true", help="ship logs only")
        parser.add_argument(
            "--no-companions", action="store_true", help="run no companion loop (the log drains' forwarder)"
        )
        shipper_arguments(parser)

    def handle(self, *args, **options):
        done = threading.Event()
        # The main thread only waits: SIGTERM (honcho, systemd) and Ctrl-C both end in a clean stop.
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        only = only_labels(options["only_label"])
        shipper = Shipper(only_labels=only).start(scan_interval=options["scan_interval"])
        sampler = (
            None
            if options["no_metrics"]
            else Sampler(interval=options["sample_interval"], traffic=router_traffic()).start()
        )
        stops = [] if options["no_companions"] else [start() for start in COMPANIONS]
        self.stdout.write(f"ship_logs: following app containers on node {shipper.node}")
        self.stdout.flush()
        done.wait()
        for stop in stops:
            stop()
        if sampler is not None:
            sampler.stop()
        shipper.stop()
        self.stdout.write("ship_logs: stopped")

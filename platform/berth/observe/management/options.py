"""The shipper's command-line options, shared by the commands that run it (`ship_logs` alone, `daemons` with the
watcher and beat)."""

from argparse import ArgumentParser

from django.core.management.base import CommandError

from berth.observe.metrics import SAMPLE_INTERVAL
from berth.observe.shipper import SCAN_INTERVAL


def shipper_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--scan-interval", type=float, default=SCAN_INTERVAL)
    parser.add_argument("--sample-interval", type=float, default=SAMPLE_INTERVAL)
    parser.add_argument(
        "--only-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="follow only containers that also carry this label (tests and benchmarks on a shared engine)",
    )


def only_labels(values: list[str]) -> dict[str, str]:
    """--only-label's KEY=VALUE pairs; one without a key or an `=` is refused in one line."""
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not key or not sep:
            raise CommandError(f"--only-label {value!r}: use KEY=VALUE")
        labels[key] = label
    return labels

"""The periodic sweep: work past its deadline (a worker was killed, a node vanished) is marked failed.

Domains register a function that fails their own stuck rows; the sweep calls each and counts what it fixed.
"""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_SWEEPERS: list[Callable[[], int]] = []


def register_sweeper(func: Callable[[], int]) -> Callable[[], int]:
    _SWEEPERS.append(func)
    return func


def sweep_stuck_work() -> int:
    fixed = 0
    for sweeper in _SWEEPERS:
        try:
            fixed += sweeper()
        except Exception:
            logger.exception("sweeper %s failed", sweeper.__qualname__)
    return fixed

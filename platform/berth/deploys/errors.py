"""What goes wrong in a roll-out, as the deployer is told it."""

import logging

logger = logging.getLogger(__name__)


class DeployError(Exception):
    """A release could not be rolled out; the previous one keeps serving. The message is for the deployer."""


class NothingLive(DeployError):
    """The app has no live release to act on (scale in place, restart, run)."""

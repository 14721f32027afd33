"""Platform events of an app (`berth events`, the dashboard): what deploys record as they go."""

import logging

from berth.observe.services import event_record

logger = logging.getLogger(__name__)


def app_event(app_name: str, kind: str, message: str) -> None:
    """A platform event in the app's event and log streams (berth events, the dashboard)."""
    try:
        event_record(app=app_name, kind=kind, message=message)
    except Exception:  # an event is worth less than the roll-out that reports it
        logger.exception("event %s of %s not recorded", kind, app_name)

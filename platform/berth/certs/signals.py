"""What berth.certs tells itself across a commit: a user asked for a renewal (kwargs: certificate_id), and the
receiver queues the attempt for a worker (services never import tasks)."""

from django.dispatch import Signal

certificate_renew_requested = Signal()

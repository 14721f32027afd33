"""What builds tell the floors above them."""

from django.dispatch import Signal

# A Build was queued and its transaction committed (kwargs: build). berth.deploys runs it: build, release, roll out.
build_queued = Signal()

# A Build failed (kwargs: build, reason), sent once by the transition that failed it. berth.hooks tells the team.
build_failed = Signal()

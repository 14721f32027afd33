"""What deploys tell the floors above them."""

from django.dispatch import Signal

# A build's release went live (kwargs: app). berth.nodes collects the app's old images on a multi-node cluster.
build_released = Signal()

# The replaced releases of an app were removed after a deploy (kwargs: app_id, versions), in the background once the
# new release serves. berth.nodes collects the app's old images then: not before, while their containers still stop.
releases_retired = Signal()

# A rolling restart was asked for and checked (kwargs: app, process: a process type or None for all): the receiver
# queues it for a worker.
restart_requested = Signal()

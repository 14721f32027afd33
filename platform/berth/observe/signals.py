"""What the observe floor tells the floors above it."""

from django.dispatch import Signal

# A platform event of an app was recorded (kwargs: app, kind, message, ts), e.g. release.live, crashed, cert.alarm.
# Sent with send_robust: a receiver's failure (berth.hooks' notifications) is logged, never the event's sender's.
event_recorded = Signal()

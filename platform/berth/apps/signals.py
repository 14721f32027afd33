"""Signals other domains listen to instead of being imported from here (imports point one way)."""

from django.dispatch import Signal

# Sent after the transaction that deleted the app commits; kwargs: name (str), team (str). Runtime and routing
# remove what they run for it.
app_destroyed = Signal()
# Sent after a formation change commits; kwargs: app (App), processes (list[str]).
formation_changed = Signal()
# Sent after a custom domain is added or removed; kwargs: app (App), hostname (str), added (bool).
domains_changed = Signal()

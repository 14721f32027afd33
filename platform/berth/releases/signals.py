from django.dispatch import Signal

# Sent after the transaction that created a release commits; kwargs: release (Release). Deploys hook here, e.g.
# a config change makes a new release of the same image that has to be rolled out.
release_created = Signal()

"""Errors services raise besides Django's ValidationError / PermissionDenied / Http404.

The API turns Conflict into 409; other callers (git hooks, the dashboard) show the message.
"""


class Conflict(Exception):
    """The request is valid but clashes with existing state (a duplicate name, the last owner, ...)."""

"""API conventions shared by every resource: every error is JSON with a `detail` string (berth.api.schema.Error)."""

from django.db import DatabaseError, DataError, IntegrityError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from berth.runtime.client import ENGINE_UNAVAILABLE


def _line(value) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_line(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_line(item)}" for key, item in value.items())
    return str(value)


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        if isinstance(exc, DataError):
            # the request's own data (a NUL byte, a number out of range), not an outage
            return Response({"detail": "the request holds a value the database cannot store"}, status=400)
        if isinstance(exc, IntegrityError):
            # a unique row another request created first: the same answer as the services' own Conflict
            return Response({"detail": "this clashes with existing data; try again"}, status=409)
        if isinstance(exc, DatabaseError):
            return Response({"detail": "the database is unavailable; try again shortly"}, status=503)
        if isinstance(exc, ENGINE_UNAVAILABLE):
            detail = f"the Docker engine failed or is unavailable; try again shortly ({exc})"
            return Response({"detail": detail}, status=503)
        return None
    if isinstance(response.data, dict) and "detail" not in response.data:
        # field errors: keep them, and add one readable line for clients that only print `detail`
        first_field, first_errors = next(iter(response.data.items()))
        response.data = {"detail": f"{first_field}: {_line(first_errors)}", "errors": response.data}
    elif isinstance(response.data, dict) and not isinstance(response.data["detail"], str):
        # ValidationError({"detail": "..."}) and Django's ValidationError without fields: a list of messages
        response.data = {**response.data, "detail": _line(response.data["detail"])}
    elif isinstance(response.data, list):
        response.data = {"detail": _line(response.data)}
    return response

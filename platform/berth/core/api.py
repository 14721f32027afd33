"""API conventions shared by every resource: every error is JSON with a `detail`."""

from django.db import DatabaseError, DataError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        if isinstance(exc, DataError):
            # the request's own data (a NUL byte, a number out of range), not an outage
            return Response({"detail": "the request holds a value the database cannot store"}, status=400)
        if isinstance(exc, DatabaseError):
            return Response({"detail": "the database is unavailable; try again shortly"}, status=503)
        return None
    if isinstance(response.data, dict) and "detail" not in response.data:
        # field errors: keep them, and add one readable line for clients that only print `detail`
        first_field, first_errors = next(iter(response.data.items()))
        message = first_errors[0] if isinstance(first_errors, list) and first_errors else first_errors
        response.data = {"detail": f"{first_field}: {message}", "errors": response.data}
    elif isinstance(response.data, list):
        response.data = {"detail": "; ".join(str(item) for item in response.data)}
    return response

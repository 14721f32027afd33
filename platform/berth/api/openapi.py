"""The schema generator of API v1: every operation also documents the errors it can answer.

Views declare their success answers (and the conflicts particular to them, e.g. 409 on a duplicate name); the error
statuses every route shares follow from its permission rule and its shape, so they are added here once rather than
by hand on every operation. The rules mirror what answers them:

- 400: a request body to validate, or a path parameter (a value PostgreSQL cannot store, such as a NUL);
- 401: any route that is not PUBLIC (no, or a bad, token);
- 403: a rule above "any member of the team" (a role too low, not a superuser), or a write (CSRF of a session);
- 404: a path parameter naming an object, or a team-scoped rule (a team the caller cannot see);
- 413 / 415: a request body too large (berth.api.common.MAX_BODY_BYTES) / in a media type no parser reads;
- 503: every route (the database or the Docker engine unreachable: berth.api.errors.exception_handler).
"""

import re

from django.urls import Resolver404, resolve
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.schemas.inspectors import DefaultSchema, ViewInspector

from berth.accounts.roles import ROLES, VIEWER
from berth.api import schema as S
from berth.api.permissions import PUBLIC, USER, rule_for

WRITES = ("POST", "PUT", "PATCH", "DELETE")
ERRORS = {
    "400": "the request is malformed or a field is invalid (`errors` names the fields)",
    "401": "no credentials, or a token that is invalid, revoked or expired",
    "403": "the caller's role is too low for this",
    "404": "not found, or not visible to the caller",
    "413": "the request body is too large",
    "415": "the request body is in a media type the API does not read (send JSON)",
    "503": "the database or the Docker engine is unavailable; try again shortly",
}
_PATH_PARAMETER = re.compile(r"\{[^}/]+\}")


def _route_name(path: str) -> str:
    # "1" satisfies every converter API v1 uses (int and str)
    try:
        return resolve(_PATH_PARAMETER.sub("1", path)).view_name
    except Resolver404:
        return ""


class BerthAutoSchema(AutoSchema):
    def map_parsers(self) -> list[str]:
        # The API's contract is JSON (the CLI sends nothing else). Views still parse forms for curl users, but the
        # schema, and so generated clients and the fuzz test, stick to JSON.
        return ["application/json"]

    def error_statuses(self) -> list[str]:
        rule = rule_for(_route_name(self.path), self.method)
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        has_path_parameters = bool(_PATH_PARAMETER.search(self.path))
        codes = []
        if has_body or has_path_parameters:
            codes.append("400")
        if rule != PUBLIC:
            codes.append("401")
            if rule not in (USER, VIEWER) or self.method in WRITES:
                codes.append("403")
        if has_path_parameters or rule in ROLES:
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        codes.append("503")
        return codes

    # drf-spectacular has no public hook per operation for responses; this one is where its own overrides land
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self.error_statuses():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(S.Error, description=ERRORS[code]), code, direction=direction
                )
        if "401" in responses:
            # DRF sets it on every 401: the first authenticator (berth.api.auth) names the Bearer scheme
            responses["401"].setdefault("headers", {})["WWW-Authenticate"] = {
                "required": True,
                "schema": {"type": "string"},
                "description": 'how to authenticate: Bearer realm="berth"',
            }
        return dict(sorted(responses.items()))


class BerthSchema(DefaultSchema):
    """DRF's DefaultSchema with BerthAutoSchema in place of the DEFAULT_SCHEMA_CLASS setting: a fresh inspector for
    each view instance (one shared inspector would mix up two schemas generated at once: it keeps the view, path
    and method of the operation it is on), unless the generator set one (the views' @extend_schema)."""

    def __get__(self, instance, owner):
        result = ViewInspector.__get__(self, instance, owner)
        if not isinstance(result, DefaultSchema):
            return result
        inspector = BerthAutoSchema()
        inspector.view = instance
        return inspector

"""Errors of API v1 and their place in the schema: every error is `Error` ({"detail": "one line", "errors"?}), and
every operation documents the error statuses it can answer (berth.api.openapi)."""

import docker.errors
import pytest
import requests.exceptions
import yaml
from berth.api.common import MAX_BODY_BYTES
from berth.api.errors import exception_handler
from django.core.management import call_command
from django.db import IntegrityError, OperationalError


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_the_schema_generates_without_a_warning_and_validates(tmp_path):
    # drf-spectacular's own check: an untyped view, a colliding name or an invalid document fails it
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    document = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    assert len(list(operations(document))) >= 48


def test_every_error_status_of_every_operation_is_the_error_shape_in_json(schema):
    seen = 0
    for name, operation in operations(schema):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }, (name, code)
                seen += 1
    assert seen > 48 * 3
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"


def test_each_operation_documents_the_errors_its_rule_and_shape_allow(schema):
    ops = dict(operations(schema))
    for name, operation in ops.items():
        codes = set(operation["responses"])
        assert "503" in codes, name  # the database (or the Docker engine) down
        if name != "POST /api/v1/auth/token":
            assert "401" in codes and "WWW-Authenticate" in operation["responses"]["401"]["headers"], name
        if "requestBody" in operation:
            assert set(operation["requestBody"]["content"]) == {"application/json"}, name
            assert {"400", "413", "415"} <= codes, name
        if "{" in name:
            assert {"400", "404"} <= codes, name
    assert "401" not in ops["POST /api/v1/auth/token"]["responses"]
    # a viewer may read an app: no 403 there; its config needs member: 403
    assert "403" not in ops["GET /api/v1/apps/{app}"]["responses"]
    assert "403" in ops["GET /api/v1/apps/{app}/config"]["responses"]
    # the team of a new app comes from the body: 404 without a path parameter
    assert "404" in ops["POST /api/v1/apps"]["responses"]
    assert "404" not in ops["GET /api/v1/nodes"]["responses"]


def test_builds_deploys_runs_and_nodes_are_typed_and_streams_are_text(schema):
    ops = dict(operations(schema))

    def success(name):
        responses = ops[name]["responses"]
        return next(responses[code]["content"] for code in responses if code.startswith("2"))

    assert success("GET /api/v1/apps/{app}/builds") == {
        "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Build"}}}
    }
    assert success("POST /api/v1/apps/{app}/deploys")["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Build"
    }
    assert success("GET /api/v1/apps/{app}/ps")["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/Process"
    }
    assert success("GET /api/v1/nodes/{node}")["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Node"
    }
    for stream in ("/api/v1/apps/{app}/builds/{build_id}/output", "/api/v1/apps/{app}/runs/{run_id}/output"):
        assert success(f"GET {stream}") == {"text/plain": {"schema": {"type": "string"}}}
    assert "requestBody" not in ops["POST /api/v1/apps/{app}/builds/{build_id}/cancel"]
    assert ops["POST /api/v1/apps/{app}/runs"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunRequest"
    }


def test_a_400_has_one_detail_line_and_keeps_its_field_errors(world):
    response = world.client("owner").post("/api/v1/teams", {"name": ""}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "name: is required (a non-empty string)",
        "errors": {"name": "is required (a non-empty string)"},
    }


def test_a_400_without_fields_has_a_detail_string_not_a_list(world, client):
    # ValidationError({"detail": ...}) used to answer {"detail": ["..."]}: the CLI printed "['...']"
    response = client.post(
        "/api/v1/auth/token", {"username": "the-member", "password": "nope"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "wrong username or password"}


def test_a_body_over_the_limit_is_413_before_it_is_parsed(world):
    owner = world.client("owner")
    big = '{"name": "' + "x" * MAX_BODY_BYTES + '"}'
    response = owner.generic("POST", "/api/v1/teams", big, content_type="application/json")
    assert response.status_code == 413
    assert "larger than 1024 KiB" in response.json()["detail"]
    # a GET's body is never read: no limit there
    assert owner.generic("GET", "/api/v1/teams", big, content_type="application/json").status_code == 200


def test_a_body_that_is_not_json_or_a_form_is_415(world):
    response = world.client("owner").generic("POST", "/api/v1/teams", "name=x", content_type="text/plain")
    assert response.status_code == 415
    assert "text/plain" in response.json()["detail"]


@pytest.mark.parametrize(
    ("exc", "status", "words"),
    [
        (IntegrityError("duplicate key value violates unique constraint"), 409, "clashes"),
        (OperationalError("server closed the connection"), 503, "database is unavailable"),
        (docker.errors.DockerException("Error while fetching server API version"), 503, "Docker engine"),
        (requests.exceptions.ConnectionError("/var/run/docker.sock refused"), 503, "Docker engine"),
    ],
)
def test_database_and_engine_errors_are_answered_as_errors_not_500(exc, status, words):
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert words in response.data["detail"] and set(response.data) == {"detail"}

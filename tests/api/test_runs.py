"""`berth run` through the API: a container of the live release's image and config, output and exit code."""

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.docker, pytest.mark.django_db]


@pytest.fixture
def live_app():
    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from berth.releases.services import config_update, release_create
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="runner", password="pw-123456")
    team = team_create(name="runners", actor=user)
    app = app_create(team=team, name="t-run-api", actor=user)
    config_update(app=app, changes={"GREETING": "hello from config"}, actor=user)
    release_create(
        app=app,
        image="berth/stack:bookworm",
        procfile={"web": "true"},
        description="t",
        actor=user,
        status="live",
    )
    client = APIClient()
    client.force_authenticate(user)
    yield app, client
    from berth.runtime.oneoff import oneoff_prune

    oneoff_prune(older_than=0, app="t-run-api")


def test_a_run_prints_its_output_with_the_release_config_and_returns_the_exit_code(live_app):
    app, client = live_app
    started = client.post(
        f"/api/v1/apps/{app.name}/runs", {"command": "echo $GREETING; exit 3"}, format="json"
    )
    assert started.status_code == 201, started.content
    run_id = started.json()["id"]
    output = client.get(f"/api/v1/apps/{app.name}/runs/{run_id}/output")
    assert b"".join(output.streaming_content).decode().splitlines() == ["hello from config"]
    assert client.get(f"/api/v1/apps/{app.name}/runs/{run_id}").json() == {
        "id": run_id,
        "status": "exited",
        "exit_code": 3,
    }


def test_a_run_of_another_app_is_not_found(live_app):
    app, client = live_app
    from berth.runtime.oneoff import run_oneoff

    other = run_oneoff(
        app="t-run-other",
        team="runners",
        release=1,
        image="berth/stack:bookworm",
        command="true",
        env={},
        detach=True,
    )
    try:
        response = client.get(f"/api/v1/apps/{app.name}/runs/{other.container_id[:12]}")
        assert response.status_code == 404
        assert "no run" in response.json()["detail"]
    finally:
        from berth.runtime.oneoff import oneoff_remove

        oneoff_remove(other.container_id)


def test_an_empty_command_is_refused(live_app):
    app, client = live_app
    response = client.post(f"/api/v1/apps/{app.name}/runs", {"command": "  "}, format="json")
    assert response.status_code == 400
    assert "command" in response.json()["detail"]

"""Pipelines through the API: stages, who may arrange them, and what a promotion refuses before queuing anything
(the promotion itself, through the running platform: tests/e2e/test_pipelines_e2e.py)."""

from berth.audit.models import AuditEvent
from berth.builds.models import Build
from berth.pipelines.models import Pipeline
from berth.releases.services import release_set_status


def test_a_pipeline_holds_a_teams_apps_by_stage_and_moves_them(world, make_app):
    api = world.client("member")
    assert api.post("/api/v1/pipelines", {"name": "shop", "team": "acme"}, format="json").status_code == 201
    staging = make_app("demo-staging", team=world.team)
    for app, stage in ((staging, "staging"), (world.app, "production")):
        answer = api.post("/api/v1/pipelines/shop/apps", {"app": app.name, "stage": stage}, format="json")
        assert answer.status_code == 200, answer.json()
    assert api.get("/api/v1/pipelines/shop").json()["apps"] == [
        {"app": "demo-staging", "stage": "staging"},
        {"app": "demo", "stage": "production"},
    ]
    # moved, not added twice
    api.post("/api/v1/pipelines/shop/apps", {"app": "demo-staging", "stage": "development"}, format="json")
    assert [a["stage"] for a in api.get("/api/v1/pipelines/shop").json()["apps"]] == [
        "development",
        "production",
    ]
    assert api.delete("/api/v1/pipelines/shop/apps/demo-staging").status_code == 204
    assert [a["app"] for a in api.get("/api/v1/pipelines").json()[0]["apps"]] == ["demo"]
    assert AuditEvent.objects.filter(action="pipeline.app.set", team=world.team).count() == 3


def test_other_teams_apps_and_pipelines_stay_out_and_bad_input_is_refused(world):
    api = world.client("owner")
    api.post("/api/v1/pipelines", {"name": "shop"}, format="json")
    outsider = world.client("outsider")
    assert outsider.get("/api/v1/pipelines").json() == []
    assert outsider.get("/api/v1/pipelines/shop").status_code == 404
    assert outsider.post("/api/v1/pipelines", {"name": "shop"}, format="json").status_code == 409
    for body, status, detail in (
        ({"app": "demo", "stage": "qa"}, 400, "stage: must be one of development, staging, production"),
        ({"app": "nope", "stage": "staging"}, 404, "not found"),
        ({"stage": "staging"}, 400, "app: is required"),
    ):
        answer = api.post("/api/v1/pipelines/shop/apps", body, format="json")
        assert answer.status_code == status and detail in answer.json()["detail"], answer.json()
    assert api.post("/api/v1/pipelines", {"name": "Bad Name"}, format="json").status_code == 400
    assert Pipeline.objects.filter(name="shop").count() == 1


def test_a_promotion_is_refused_before_anything_is_queued(world, make_app):
    api = world.client("member")
    answer = api.post("/api/v1/apps/demo/promote", {}, format="json")
    assert answer.status_code == 409 and "no live release" in answer.json()["detail"]
    release_set_status(release=world.release, from_statuses=["pending"], to_status="live")
    assert "in no pipeline" in api.post("/api/v1/apps/demo/promote", {}, format="json").json()["detail"]
    api.post("/api/v1/pipelines", {"name": "shop", "team": "acme"}, format="json")
    api.post("/api/v1/pipelines/shop/apps", {"app": "demo", "stage": "staging"}, format="json")
    answer = api.post("/api/v1/apps/demo/promote", {}, format="json")
    assert answer.status_code == 400 and "has no app" in answer.json()["detail"]
    make_app("demo-prod", team=world.team)
    api.post("/api/v1/pipelines/shop/apps", {"app": "demo-prod", "stage": "production"}, format="json")
    answer = api.post("/api/v1/apps/demo/promote", {"to": ["other"]}, format="json")
    assert answer.status_code == 400 and "not in the next stage" in answer.json()["detail"]
    assert api.post("/api/v1/apps/demo/promote", {"to": "demo-prod"}, format="json").status_code == 400
    assert not Build.objects.exists()

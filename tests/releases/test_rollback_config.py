"""A rollback brings back the old release's config vars as the app's own (as on Heroku), so the next push keeps
them instead of silently undoing the rollback."""

import pytest
from berth.apps.selectors import config_for_app


@pytest.fixture
def owner(world):
    return world.client("owner")


def test_a_rollback_makes_the_old_config_the_apps_and_the_next_release_builds_on_it(world, owner):
    from berth.releases.models import Release

    assert owner.patch("/api/v1/apps/demo/config", {"GREETING": "hi"}, format="json").status_code == 200
    assert (
        owner.patch(
            "/api/v1/apps/demo/config", {"GREETING": "bonjour", "NEW": "1"}, format="json"
        ).status_code
        == 200
    )
    hi = Release.objects.get(app=world.app, description="Set GREETING config vars")

    answer = owner.post("/api/v1/apps/demo/rollback", {"version": hi.version}, format="json")
    assert answer.status_code in (200, 201, 202), answer.content
    assert config_for_app(app=world.app) == {"GREETING": "hi"}
    rollback = Release.objects.filter(app=world.app).order_by("-version").first()
    assert rollback.config == {"GREETING": "hi"}

    assert owner.patch("/api/v1/apps/demo/config", {"OTHER": "x"}, format="json").status_code == 200
    latest = Release.objects.filter(app=world.app).order_by("-version").first()
    assert latest.config == {"GREETING": "hi", "OTHER": "x"}

"""PORT is Berth's to set: a config var of that name would be silently overridden, so it is refused."""

import pytest
from berth.apps.models import ConfigVar
from berth.releases.models import Release


@pytest.fixture
def owner(world):
    return world.client("owner")


def test_setting_port_is_400_naming_why_and_nothing_is_written(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"GOOD": "x", "PORT": "1234"}, format="json")
    assert response.status_code == 400
    assert "PORT is set by Berth" in response.json()["detail"]
    assert not ConfigVar.objects.filter(app=world.app).exists()
    assert Release.objects.filter(app=world.app).count() == 1


def test_unsetting_port_is_allowed(world, owner):
    response = owner.patch("/api/v1/apps/demo/config", {"PORT": None}, format="json")
    assert response.status_code == 200

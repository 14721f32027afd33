"""The add-ons API without the engine: another team neither lists nor touches a team's add-on (404 as for apps),
bad input is one line, the audit log records attach and detach."""

import pytest
from berth.addons.models import Addon, AddonAttachment
from berth.apps.crypto import encrypt_text
from berth.audit.models import AuditEvent
from django.urls import reverse


@pytest.fixture
def addon(world):
    return Addon.objects.create(
        team=world.team, name="pg-main", kind="postgres", password_encrypted=encrypt_text("pw")
    )


@pytest.fixture
def their_app(world, make_app):
    """An app of the outsider's own team, through which they might try to reach acme's add-on."""
    from berth.accounts.models import Team

    return make_app("theirs", team=Team.objects.get(name="other"), actor=world.users["outsider"])


def test_another_team_cannot_see_or_attach_the_addon_through_its_own_app(world, addon, their_app):
    client = world.client("outsider")
    listed = client.get(reverse("api:app-addons", kwargs={"app": "theirs"}) + "?all=1")
    assert listed.status_code == 200 and listed.json() == []
    for method, name in (
        ("get", "api:app-addon"),
        ("post", "api:app-addon-attachment"),
        ("delete", "api:app-addon"),
    ):
        response = getattr(client, method)(
            reverse(name, kwargs={"app": "theirs", "addon": "pg-main"}), {}, format="json"
        )
        assert response.status_code == 404, (method, name, response.content)
        assert response.json()["detail"] == "no add-on named 'pg-main'"
    assert not AddonAttachment.objects.filter(addon=addon).exists()


def test_the_team_lists_it_and_attach_and_detach_are_audited(world, addon):
    client = world.client("member")
    url = reverse("api:app-addon-attachment", kwargs={"app": "demo", "addon": "pg-main"})
    attached = client.post(url, {"as": "main"}, format="json")
    assert attached.status_code == 201, attached.content
    assert attached.json()["attachments"] == [{"app": "demo", "config_var": "MAIN_URL"}]
    again = client.post(url, {}, format="json")
    assert again.status_code == 409 and "already attached" in again.json()["detail"]
    listed = client.get(reverse("api:app-addons", kwargs={"app": "demo"})).json()
    assert [a["name"] for a in listed] == ["pg-main"]
    assert client.delete(url).status_code == 204
    actions = list(AuditEvent.objects.filter(target="pg-main").values_list("action", flat=True))
    assert sorted(actions) == ["addon.attach", "addon.detach"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"kind": "mysql"}, "kind: unknown add-on 'mysql'; one of: postgres, redis"),
        ({"kind": "postgres", "plan": "huge"}, "plan: unknown plan 'huge'; one of: small, medium"),
        (
            {"kind": "redis", "as": "1bad"},
            "as: use letters, digits and _, starting with a letter (at most 41)",
        ),
        (
            {"kind": "redis", "name": "Bad_Name"},
            "name: use 2-20 lowercase letters, digits and dashes, starting with a letter",
        ),
    ],
)
def test_bad_create_input_is_one_line_and_makes_nothing(world, body, detail):
    response = world.client("member").post(
        reverse("api:app-addons", kwargs={"app": "demo"}), body, format="json"
    )
    assert (response.status_code, response.json()["detail"]) == (400, detail)
    assert not Addon.objects.exists()

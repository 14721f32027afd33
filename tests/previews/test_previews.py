"""Preview apps below the git server: names, what they copy, the cap, the reaper, and the parent's settings
(the pushes themselves, through the running platform: tests/e2e/test_previews_e2e.py)."""

from datetime import timedelta

import pytest
from berth.accounts.errors import Conflict
from berth.apps.models import App
from berth.apps.selectors import config_for_app
from berth.apps.services import app_destroy, config_replace
from berth.apps.validators import validate_app_name
from berth.previews.services import preview_ensure, preview_name, previews_reap
from django.utils import timezone


@pytest.mark.parametrize(
    ("parent", "branch", "expected"),
    [
        ("shop", "feature/Login", "shop--feature-login"),
        ("shop", "__", "shop--branch"),
        ("shop", "fix_1.2", "shop--fix-1-2"),
    ],
)
def test_a_preview_is_named_after_its_branch(parent, branch, expected):
    assert preview_name(parent, branch) == expected


def test_a_long_branch_is_cut_and_hash_suffixed_to_a_valid_distinct_name():
    first = preview_name("a-long-app-name", "feature/a-very-long-branch-name-one")
    second = preview_name("a-long-app-name", "feature/a-very-long-branch-name-two")
    assert len(first) == 30 and first != second and first.startswith("a-long-app-name--featur-")
    validate_app_name(first)


def test_a_preview_copies_the_config_but_the_kept_back_keys_and_the_cap_holds(make_app, settings):
    settings.BERTH_PREVIEWS_MAX = 2
    parent = make_app("shop")
    config_replace(app=parent, config={"SHARED": "1", "PAYMENTS_KEY": "live"})
    App.objects.filter(pk=parent.pk).update(previews=True, preview_exclude=["PAYMENTS_KEY"])
    parent.refresh_from_db()
    preview, created = preview_ensure(parent=parent, branch="one", actor=None)
    assert created and (preview.name, preview.team_id, preview.parent_id) == (
        "shop--one",
        parent.team_id,
        parent.pk,
    )
    assert config_for_app(app=preview) == {"SHARED": "1"}
    assert preview_ensure(parent=parent, branch="one", actor=None) == (preview, False)
    preview_ensure(parent=parent, branch="two", actor=None)
    with pytest.raises(Conflict, match="has 2 preview apps, the most allowed"):
        preview_ensure(parent=parent, branch="three", actor=None)
    # destroying the parent destroys its previews first
    app_destroy(app=parent, actor=None)
    assert not App.objects.filter(name__startswith="shop").exists()


def test_idle_previews_are_reaped_and_fresh_ones_kept(make_app, settings):
    settings.BERTH_PREVIEWS_IDLE_DAYS = 7
    parent = make_app("shop")
    old, _ = preview_ensure(parent=parent, branch="old", actor=None)
    fresh, _ = preview_ensure(parent=parent, branch="fresh", actor=None)
    App.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    assert previews_reap() == 1
    assert set(App.objects.filter(parent=parent).values_list("name", flat=True)) == {fresh.name}


def test_preview_settings_are_checked(world):
    api = world.client("member")
    for body, detail in (
        ({"previews": "yes"}, "previews: must be true or false"),
        ({"preview_exclude": "KEY"}, "preview_exclude: must be a list"),
        ({"preview_exclude": ["1BAD"]}, "preview_exclude: invalid key"),
    ):
        answer = api.patch("/api/v1/apps/demo", body, format="json")
        assert answer.status_code == 400 and answer.json()["detail"].startswith(detail), answer.json()
    answer = api.patch(
        "/api/v1/apps/demo", {"previews": True, "preview_exclude": ["STRIPE_KEY"]}, format="json"
    )
    assert (answer.json()["previews"], answer.json()["preview_exclude"]) == (True, ["STRIPE_KEY"])

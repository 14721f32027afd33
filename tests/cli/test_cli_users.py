"""`berth users…` (platform administrators manage accounts) and a first `apps:create` without a team, through the
installed script against a real live server."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from tests.cli.conftest import PASSWORD, as_json, assert_one_error_line, make_user, ok, run_berth

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def root(berth, live_server, fast_passwords):
    make_user("root").__class__.objects.filter(username="root").update(is_superuser=True, is_staff=True)
    ok(berth("login", "--url", live_server.url, "--username", "root", "--password", PASSWORD))
    return berth


def test_a_platform_admin_creates_lists_disables_and_enables_accounts(root, live_server):
    created = ok(root("users:create", "grace", "--email", "grace@example.test"))
    first, link = created.splitlines()
    assert (
        first == "Created grace <grace@example.test>. Send them this link to set a password (it works once):"
    )
    assert link.startswith(f"{settings.BERTH_PUBLIC_URL.rstrip('/')}/password-reset/"), link
    lines = ok(root("users")).splitlines()
    assert lines[0].split() == ["USERNAME", "EMAIL", "STATE", "ADMIN", "TEAMS", "LAST", "LOGIN"]
    assert [line.split()[:3] for line in lines[2:]] == [
        ["grace", "grace@example.test", "active"],
        ["root", "root@example.test", "active"],
    ]
    assert [u["username"] for u in as_json(root("users", "--search", "gra", "--json"))] == ["grace"]

    assert ok(root("users:disable", "grace")).startswith("Disabled grace")
    assert not get_user_model().objects.get(username="grace").is_active
    assert_one_error_line(root("users:password-reset", "grace"), contains="grace is disabled")
    assert ok(root("users:enable", "grace")) == "Enabled grace\n"
    reset = ok(root("users:password-reset", "grace")).splitlines()
    assert reset[0].startswith("Send grace this link") and reset[1].startswith("http")

    assert_one_error_line(
        root("users:create", "grace", "--email", "g2@example.test"), contains="already exists"
    )
    assert_one_error_line(root("users:create", "x", "--email", "nope"), contains="not a valid e-mail address")
    assert_one_error_line(root("users:disable", "root"), contains="cannot disable your own account")
    assert_one_error_line(root("users:disable", "nobody"), contains="nobody")


def test_someone_who_is_not_a_platform_admin_is_told_so(berth, live_server, fast_passwords, tmp_path):
    make_user("bob")
    home = tmp_path / "bob"
    home.mkdir()
    ok(run_berth("login", "--url", live_server.url, "--username", "bob", "--password", PASSWORD, home=home))
    assert_one_error_line(run_berth("users", home=home), contains="platform-admin")


def test_a_first_app_needs_no_team(berth, live_server, fast_passwords):
    make_user("ada")
    ok(berth("login", "--url", live_server.url, "--username", "ada", "--password", PASSWORD))
    assert ok(berth("apps:create", "first-app")).startswith("Created first-app in team ada:")
    assert [t["name"] for t in as_json(berth("teams", "--json"))] == ["ada"]

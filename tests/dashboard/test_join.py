"""Joining a team through an invitation link and the first-deploy walkthrough, in a real browser (Debian's chromium
driven by Playwright) against pytest-django's live server."""

import re
from datetime import timedelta

import pytest

from tests.dashboard.conftest import DESKTOP, TIMEOUT_MS, PageOpener, build_world

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def world(browser, transactional_db):
    return build_world()


@pytest.fixture
def open_page(browser, live_server, world):
    opener = PageOpener(browser, live_server.url)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


@pytest.fixture
def stranger(browser, live_server, open_page):
    """A browser context nobody is signed in to (closed with the others)."""

    def new(viewport: dict = DESKTOP):
        context = browser.new_context(viewport=viewport, base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        open_page.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: open_page.errors.append(str(exc)))
        return page

    return new


def invite_from_the_team_page(open_page, email: str, role: str = "member") -> str:
    page = open_page("admin")
    page.goto("/teams/acme/")
    page.fill("#invite-email", email)
    page.select_option("#invite-role", role)
    page.click("#invitation-add-submit")
    page.wait_for_url(re.compile(r".*/teams/acme/#invitations$"))
    return page.locator("#invitation-link").inner_text().strip()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_brand_new_invitee_opens_the_link_sets_a_password_and_sees_the_teams_apps(
    open_page, stranger, live_server, viewport
):
    from berth.accounts.models import Membership

    link = invite_from_the_team_page(open_page, "newcomer@example.test", "member")
    assert link.startswith(live_server.url + "/join/")
    page = stranger(viewport)
    page.goto(link)
    page.wait_for_url(re.compile(r".*/join/$"))  # the token left the address bar
    assert page.locator("#join-email-field").input_value() == "newcomer@example.test"
    assert page.locator("#join-email-field").get_attribute("readonly") is not None
    page.fill("#join-username", "newcomer")
    page.fill("#join-password", "short")
    page.fill("#join-password2", "short")
    page.click("#join-sign-up")
    # refused in place: the rule beside the password, the username kept
    assert "at least 8 characters" in page.locator("#join-password-error").inner_text()
    assert page.locator("#join-username").input_value() == "newcomer"
    page.fill("#join-password", "a-long-passphrase")
    page.fill("#join-password2", "a-long-passphrase")
    page.click("#join-sign-up")
    page.wait_for_url(re.compile(r".*/apps/$"))
    assert "Welcome to acme" in page.locator("#messages").inner_text()
    assert page.locator("#whoami").inner_text() == "newcomer"
    page.locator('tr[data-app="demo"]').wait_for()  # the team's apps
    assert page.locator("#team-select").input_value() == "acme"
    assert Membership.objects.get(user__username="newcomer").role == "member"
    # the link worked once
    again = stranger().goto(link)
    assert again.status == 410


def test_an_expired_or_revoked_link_is_refused_with_a_clear_page(open_page, stranger, live_server, world):
    from berth.accounts.models import Invitation
    from berth.accounts.services import invitation_create, invitation_revoke
    from django.utils import timezone

    owner = world.users["owner"]
    revoked, revoked_token = invitation_create(
        team=world.team, email="r@example.test", role="member", actor=owner
    )
    invitation_revoke(invitation=revoked, actor=owner)
    expired, expired_token = invitation_create(
        team=world.team, email="e@example.test", role="member", actor=owner
    )
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    page = stranger()
    for token, title in [
        (revoked_token, "This invitation was revoked"),
        (expired_token, "This invitation has expired"),
        ("not-a-token", "This invitation link is not valid"),
    ]:
        page.goto(f"/join/{token}/")
        assert page.locator("#join-closed-title").inner_text() == title
        assert page.locator("#join-sign-up-form").count() == 0
    assert Invitation.objects.filter(accepted_at__isnull=False).count() == 0


def test_an_existing_user_signs_in_from_the_link_and_accepts(open_page, stranger, world):
    from berth.accounts.models import Membership

    link = invite_from_the_team_page(open_page, "outsider@example.test", "viewer")
    page = stranger()
    page.goto(link)
    page.click("#join-sign-in-link")
    page.fill("#id_username", "the-outsider")
    page.fill("#id_password", "pw-123456")
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/join/$"))  # back at the invitation after signing in
    page.click("#join-accept")
    page.wait_for_url(re.compile(r".*/apps/$"))
    page.locator('tr[data-app="demo"]').wait_for()
    assert Membership.objects.get(team=world.team, user__username="the-outsider").role == "viewer"


def test_a_signed_in_user_with_another_address_is_told_why_not(open_page, world):
    from berth.accounts.models import Membership
    from berth.accounts.services import invitation_create

    _, token = invitation_create(
        team=world.team, email="someone-else@example.test", role="member", actor=world.users["owner"]
    )
    page = open_page("outsider")
    page.goto(f"/join/{token}/")
    text = page.locator("#join-wrong-account").inner_text()
    assert "signed in as the-outsider" in text and "someone-else@example.test only" in text
    assert page.locator("#join-accept").count() == 0
    assert not Membership.objects.filter(team=world.team, user__username="the-outsider").exists()


# --- first deploy --------------------------------------------------------------------------------------------------


def test_a_new_app_walks_through_the_first_deploy_and_makes_a_deploy_token_once(
    open_page, live_server, world
):
    from berth.accounts.models import ApiToken
    from berth.apps.services import app_create
    from berth.releases.services import release_create

    app = app_create(team=world.team, name="fresh", actor=world.users["member"])
    page = open_page("member")
    page.goto("/apps/fresh/")
    host = live_server.url.removeprefix("http://")
    assert page.locator("#first-deploy-login").inner_text() == f"berth login {live_server.url}"
    assert page.locator("#first-deploy-remote").inner_text() == "berth git:remote -a fresh"
    assert page.locator("#first-deploy-push").inner_text() == "git push berth main"
    page.click("#first-deploy-token-create")
    page.wait_for_url(re.compile(r".*/apps/fresh/#first-deploy$"))
    line = page.locator("#first-deploy-git-remote").inner_text().strip()
    match = re.fullmatch(
        rf"git remote add berth http://the-member:(berth_[\w-]+)@{re.escape(host)}/git/fresh\.git", line
    )
    assert match, line
    token = ApiToken.objects.get(user=world.users["member"], name="git push fresh")
    assert match.group(1).startswith(token.prefix)
    page.reload()
    assert match.group(1) not in page.content()  # shown once
    # the viewer gets no walkthrough (they cannot push), and it goes once the app has a release
    assert (
        open_page("viewer").goto("/apps/fresh/")
        and "first-deploy" not in open_page.contexts[-1].pages[0].content()
    )
    release_create(
        app=app, image="fresh:v1", procfile={"web": "x"}, description="Deploy", actor=None, status="built"
    )
    page.goto("/apps/fresh/")
    assert page.locator("#first-deploy").count() == 0

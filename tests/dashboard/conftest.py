"""A team with a user in each role, an outsider, and an app with two releases; a real browser (Debian's chromium
driven by Playwright) logged in as one of them."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

PASSWORD = "pw-123456"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 900}
TIMEOUT_MS = 10_000


def build_world():
    """Team acme (owner, admin, member, viewer), team other (outsider), app demo with v1 and v2 and formation."""
    from berth.accounts.services import membership_add, team_create
    from berth.apps.services import app_create
    from berth.releases.services import config_update, release_create
    from django.contrib.auth import get_user_model

    users = {
        role: get_user_model().objects.create_user(
            username=f"the-{role}", email=f"{role}@example.test", password=PASSWORD
        )
        for role in ("owner", "admin", "member", "viewer", "outsider")
    }
    team = team_create(name="acme", actor=users["owner"])
    for role in ("admin", "member", "viewer"):
        membership_add(team=team, user=users[role], role=role, actor=users["owner"])
    other = team_create(name="other", actor=users["outsider"])
    app = app_create(team=team, name="demo", actor=users["owner"])
    release_create(
        app=app,
        image="demo:v1",
        procfile={"web": "python app.py", "worker": "python worker.py"},
        description="Deploy abc1234",
        actor=users["owner"],
        status="built",
    )
    config_update(app=app, changes={"SECRET_TOKEN": "s3cr3t-value"}, actor=users["owner"])
    return SimpleNamespace(users=users, team=team, other=other, app=app)


@pytest.fixture
def world(db):
    return build_world()


@pytest.fixture
def client_as(client, world):
    """The test client logged in as the user of a role ("anonymous": nobody)."""

    def login(role: str):
        client.logout()
        if role != "anonymous":
            client.force_login(world.users[role])
        return client

    return login


@pytest.fixture(scope="module")
def browser():
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    # Playwright's sync API keeps an event loop in this thread while it runs; the ORM calls of the tests (and
    # the database flush after each) are still plain synchronous code, so Django's async guard is a false alarm.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _session_cookie(username: str, base_url: str) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base_url,
    }


class PageOpener:
    """Opens logged-in pages at `base_url`, each in a fresh browser context; collects JavaScript errors."""

    def __init__(self, browser, base_url: str):
        self.browser, self.base_url = browser, base_url
        self.contexts, self.errors = [], []

    def __call__(self, role: str, viewport: dict = DESKTOP):
        context = self.browser.new_context(viewport=viewport, base_url=self.base_url)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        # signed in by a session made here, as the sign-in form makes one: the form in a browser is the end-to-end
        # tests' (tests/e2e/conftest.py `page`, test_join): going through it for every page opened was two page
        # loads more each time (test_browser.py's 17 tests: 43.3 -> 36.6 CPU-s)
        context.add_cookies([_session_cookie(f"the-{role}", self.base_url)])
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())  # the confirm() of rollback, unset, remove
        page.goto("/apps/")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()

"""Authentication attacked as a stranger would: guessing passwords (by account, by address, behind a forged
X-Forwarded-For), outliving a token's expiry, probing usernames for emails, redeeming someone else's invitation.

The throttle's counts live in the real Redis cache (settings.CACHES) and the rows in the real PostgreSQL; one test
runs through a real web process (two gunicorn workers, restarted in the middle)."""

import re
import subprocess
import time
from datetime import timedelta

import httpx
import pytest
import redis
from berth.accounts.models import ApiToken, Invitation, Membership
from django.conf import settings
from django.contrib.messages import get_messages
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import REPO_DIR, wait_for

PASSWORD = "pw-123456"  # what tests/conftest.py's make_user gives every user


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Counts of earlier tests (same usernames, same 127.0.0.1) must not leak into this one."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match="*throttle:*", count=1000):
        client.delete(key)


def sign_in(username: str, password: str, address: str, **headers):
    return APIClient().post(
        "/api/v1/auth/token",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
        **headers,
    )


def assert_throttled(response):
    assert response.status_code == 429, (response.status_code, response.content[:300])
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= settings.BERTH_LOGIN_WINDOW
    assert "try again in" in response.json()["detail"]


# --- guessing passwords ------------------------------------------------------------------------------------


def test_guessing_one_accounts_password_from_many_addresses_is_throttled(make_user):
    # before: 12 wrong passwords in a row, all 400 "wrong username or password"; no throttle, no lockout
    make_user("victim")
    limit = settings.BERTH_LOGIN_FAILURES
    for n in range(limit):
        assert sign_in("victim", f"guess-{n}", f"10.0.0.{n + 1}").status_code == 400
    assert_throttled(sign_in("victim", "guess-x", "10.0.1.1"))
    # while locked even the right password gets nothing (else the lock would be an oracle)
    locked = sign_in("victim", PASSWORD, "10.0.1.2")
    assert_throttled(locked)
    assert "this account" in locked.json()["detail"]


def test_an_account_lock_ends_after_its_window_and_the_right_password_works_again(make_user, settings):
    settings.BERTH_LOGIN_WINDOW = window = 3
    make_user("victim")
    for n in range(settings.BERTH_LOGIN_FAILURES):
        sign_in("victim", "wrong", f"10.0.2.{n + 1}")
    locked_at = time.monotonic()  # the lock runs from the last failure, at the latest now
    assert_throttled(sign_in("victim", PASSWORD, "10.0.3.1"))
    # the attacker keeps trying during the lock (until a second before its end, however slow the machine): refused
    # attempts must not extend it
    attempts = 0
    while attempts < 3 and time.monotonic() - locked_at < window - 1:
        assert sign_in("victim", "wrong", f"10.0.4.{attempts + 1}").status_code == 429
        attempts += 1
        time.sleep(0.5)
    assert attempts >= 1
    time.sleep(max(0.0, locked_at + window + 0.3 - time.monotonic()))
    assert sign_in("victim", PASSWORD, "10.0.3.1").status_code == 201


def test_guessing_many_usernames_from_one_address_is_throttled(make_user):
    make_user("bystander")
    limit = settings.BERTH_LOGIN_FAILURES_PER_ADDRESS
    for n in range(limit):
        assert sign_in(f"nobody{n}", "wrong", "10.1.1.1").status_code == 400
    response = sign_in("bystander", PASSWORD, "10.1.1.1")
    assert_throttled(response)
    assert "your address" in response.json()["detail"]
    # the same user from another address is not punished for this one
    assert sign_in("bystander", PASSWORD, "10.1.1.2").status_code == 201


def test_a_forged_x_forwarded_for_does_not_escape_the_address_limit(make_user):
    # Berth is reached directly (no proxy in front): a client-sent X-Forwarded-For is a lie to ignore
    make_user("bystander")
    limit = settings.BERTH_LOGIN_FAILURES_PER_ADDRESS
    for n in range(limit):
        sign_in(f"nobody{n}", "wrong", "10.2.2.2", HTTP_X_FORWARDED_FOR=f"192.0.2.{n + 1}")
    assert_throttled(sign_in("nobody-x", "wrong", "10.2.2.2", HTTP_X_FORWARDED_FOR="198.51.100.7"))
    assert_throttled(sign_in("bystander", PASSWORD, "10.2.2.2", HTTP_X_REAL_IP="198.51.100.8"))


def test_successful_sign_ins_are_never_counted(make_user):
    make_user("regular")
    for _ in range(settings.BERTH_LOGIN_FAILURES_PER_ADDRESS + 2):
        assert sign_in("regular", PASSWORD, "10.3.3.3").status_code == 201
    # one typo later the user is still far from any limit
    assert sign_in("regular", "typo", "10.3.3.3").status_code == 400
    assert sign_in("regular", PASSWORD, "10.3.3.3").status_code == 201


def test_without_its_redis_the_guard_refuses_sign_ins_instead_of_letting_them_through(make_user, settings):
    make_user("regular")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    response = sign_in("regular", PASSWORD, "10.3.4.4")
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"] and "token" not in response.json()


def test_the_dashboard_login_is_throttled_with_a_clear_message(client, make_user):
    make_user("victim")
    for n in range(settings.BERTH_LOGIN_FAILURES):
        response = client.post(
            "/login/", {"username": "victim", "password": "wrong"}, REMOTE_ADDR=f"10.4.0.{n}"
        )
        assert response.status_code == 200 and 'id="login-error"' in response.content.decode()
    response = client.post("/login/", {"username": "victim", "password": PASSWORD}, REMOTE_ADDR="10.4.1.1")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    page = response.content.decode()
    assert 'id="login-throttled"' in page and "Too many failed sign-ins" in page and "try again in" in page
    assert "_auth_user_id" not in client.session


def test_the_dashboard_and_the_api_share_one_count(client, make_user):
    make_user("victim")
    for n in range(settings.BERTH_LOGIN_FAILURES):
        client.post("/login/", {"username": "victim", "password": "wrong"}, REMOTE_ADDR=f"10.5.0.{n}")
    assert_throttled(sign_in("victim", PASSWORD, "10.5.1.1"))


def test_creating_tokens_as_a_signed_in_user_is_throttled(make_user, token_client, client):
    user = make_user("busy")
    api = token_client(user)
    budget = settings.BERTH_TOKEN_CREATIONS_PER_HOUR
    for n in range(budget):
        assert api.post("/api/v1/tokens", {"name": f"t{n}"}, format="json").status_code == 201
    response = api.post("/api/v1/tokens", {"name": "one-too-many"}, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "try again in" in response.json()["detail"]
    # the dashboard's token form draws on the same budget
    client.force_login(user)
    response = client.post("/tokens/new", {"name": "from-the-page"}, follow=True)
    assert any("Too many API tokens" in str(m) for m in get_messages(response.wsgi_request))
    assert not ApiToken.objects.filter(name__in=["one-too-many", "from-the-page"]).exists()


# --- through the real web processes ------------------------------------------------------------------------


@pytest.fixture
def platform_processes() -> tuple[str, ...]:
    """Sign-ins and a refused push are the web process's alone: no worker or watcher."""
    return ("web",)


def test_the_throttle_holds_across_web_workers_and_their_restart(berth_platform, make_user):
    make_user("victim")
    url = f"{berth_platform.web_url}/api/v1/auth/token"
    statuses = []
    for n in range(12):
        # a new connection each time, so gunicorn's two workers both take some
        with httpx.Client(timeout=10) as http:
            statuses.append(http.post(url, json={"username": "victim", "password": f"guess-{n}"}).status_code)
    # counted per process (a local-memory cache), the two workers would let up to 10 guesses through
    assert statuses == [400] * settings.BERTH_LOGIN_FAILURES + [429] * (12 - settings.BERTH_LOGIN_FAILURES)

    web = berth_platform.processes["web"]
    web.terminate()
    web.wait(timeout=20)
    berth_platform.start("web")
    wait_for(lambda: _answers(berth_platform.web_url), timeout=30, message="the restarted web process")
    after = httpx.post(url, json={"username": "victim", "password": PASSWORD}, timeout=10)
    assert after.status_code == 429 and int(after.headers["Retry-After"]) > 0

    # `berth login` says so in one line and fails
    cli = _berth_login(berth_platform, "victim", PASSWORD)
    assert cli.returncode != 0
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "try again in" in lines[0], cli.stderr


def _answers(web_url: str) -> bool:
    try:
        return httpx.get(f"{web_url}/healthz", timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


def _berth_login(platform, username: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(REPO_DIR / ".venv/bin/berth"),
            "login",
            "--url",
            platform.web_url,
            "--username",
            username,
            "--password",
            password,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**platform.env, "HOME": str(platform.home)},
    )


# --- tokens that expire --------------------------------------------------------------------------------------


def test_a_token_can_be_created_with_an_expiry_and_lists_it(make_user, token_client):
    api = token_client(make_user("ci-owner"))
    response = api.post("/api/v1/tokens", {"name": "ci", "expires_in_days": 30}, format="json")
    assert response.status_code == 201, response.content
    expires_at = ApiToken.objects.get(pk=response.json()["id"]).expires_at
    assert expires_at is not None
    assert timedelta(days=29, hours=23) < expires_at - timezone.now() <= timedelta(days=30)
    listed = {t["name"]: t for t in api.get("/api/v1/tokens").json()}
    assert listed["ci"]["expires_at"] is not None and listed["tests"]["expires_at"] is None
    bad = api.post("/api/v1/tokens", {"name": "ci2", "expires_in_days": 0}, format="json")
    assert bad.status_code == 400 and "expires_in_days" in bad.json()["detail"]


def test_an_expired_token_is_refused_by_the_api_saying_when_it_expired(make_user):
    user = make_user("late")
    client = APIClient()
    created = sign_in("late", PASSWORD, "10.6.0.1").json()
    ApiToken.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(minutes=5))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    response = client.get("/api/v1/me")
    # before: 200 with the user's details (expires_at was never read)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("token expired on ")
    assert user.username not in response.content.decode()


def test_a_push_with_an_expired_token_is_refused(berth_platform, tenant, repo):
    ApiToken.objects.filter(user=tenant.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    (repo / "README").write_text("hi\n")
    subprocess.run(["git", "add", "README"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=repo, check=True)
    push = subprocess.run(
        ["git", "push", "berth", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo)},
    )
    assert push.returncode != 0
    assert "Authentication failed" in push.stderr or "401" in push.stderr, push.stderr
    assert "expired" in push.stderr, push.stderr


# --- emails and invitations --------------------------------------------------------------------------------


def test_probing_usernames_through_member_add_reveals_no_email(make_user, make_team, token_client):
    make_user("victim", email="victim@private.example")
    attacker = make_user("attacker")
    make_team("attackers", owner=attacker)
    api = token_client(attacker)
    known = api.post(
        "/api/v1/teams/attackers/members", {"username": "victim", "role": "viewer"}, format="json"
    )
    unknown = api.post(
        "/api/v1/teams/attackers/members", {"username": "ghost", "role": "viewer"}, format="json"
    )
    # before: 201 {"username": "victim", "email": "victim@private.example", "role": "viewer"}
    assert "private.example" not in known.content.decode()
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert not Membership.objects.filter(team__name="attackers", user__username="victim").exists()
    members = api.get("/api/v1/teams/attackers/members").content.decode()
    assert "private.example" not in members


def test_the_dashboards_member_form_reveals_no_email_either(client, make_user, make_team):
    make_user("victim", email="victim@private.example")
    attacker = make_user("attacker")
    make_team("attackers", owner=attacker)
    client.force_login(attacker)
    known = client.post("/teams/attackers/members/add", {"user": "victim", "role": "viewer"}, follow=True)
    unknown = client.post("/teams/attackers/members/add", {"user": "ghost", "role": "viewer"}, follow=True)
    # the refusal is shown beside the field (the page again, 400): the same words for both
    said = re.search(r'id="member-user-error"[^>]*>([^<]*)<', known.content.decode()).group(1)
    said_unknown = re.search(r'id="member-user-error"[^>]*>([^<]*)<', unknown.content.decode()).group(1)
    assert known.status_code == unknown.status_code == 400
    assert said.replace("victim", "X") == said_unknown.replace("ghost", "X")
    assert "private.example" not in known.content.decode()


def test_a_colleague_from_another_shared_team_can_still_be_added(make_user, make_team, token_client):
    owner = make_user("lead")
    colleague = make_user("colleague")
    first = make_team("first", owner=owner)
    make_team("second", owner=owner)
    from berth.accounts.services import membership_add

    membership_add(team=first, user=colleague, role="member", actor=owner)
    api = token_client(owner)
    response = api.post(
        "/api/v1/teams/second/members", {"username": "colleague", "role": "viewer"}, format="json"
    )
    assert response.status_code == 201
    assert response.json() == {"username": "colleague", "email": colleague.email, "role": "viewer"}


def test_an_invitation_cannot_be_redeemed_by_another_email(make_user, make_team, token_client):
    owner = make_user("host")
    team = make_team("hosts", owner=owner)
    from berth.accounts.services import invitation_create

    invitation, clear = invitation_create(team=team, email="Friend@Example.test", role="member", actor=owner)
    thief = token_client(make_user("thief", email="thief@example.test"))
    response = thief.post("/api/v1/invitations/accept", {"token": clear}, format="json")
    # before: 200 {"team": "hosts", "role": "member"}
    assert response.status_code == 403
    assert "email" in response.json()["detail"]
    invitation.refresh_from_db()
    assert invitation.accepted_at is None
    assert not Membership.objects.filter(team=team, user__username="thief").exists()

    friend = token_client(make_user("friend", email="friend@example.TEST"))
    joined = friend.post("/api/v1/invitations/accept", {"token": clear}, format="json")
    assert joined.status_code == 200 and joined.json() == {"team": "hosts", "role": "member"}


def test_the_dashboard_refuses_an_invitation_for_another_email(client, make_user, make_team):
    owner = make_user("host")
    team = make_team("hosts", owner=owner)
    from berth.accounts.services import invitation_create

    _, clear = invitation_create(team=team, email="friend@example.test", role="member", actor=owner)
    client.force_login(make_user("thief", email="thief@example.test"))
    response = client.post("/invitations/accept", {"token": clear}, follow=True)
    assert response.status_code == 400 and "another email address" in response.content.decode()
    assert not Membership.objects.filter(team=team, user__username="thief").exists()
    assert Invitation.objects.get(team=team).accepted_at is None

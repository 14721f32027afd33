"""Joining through an invitation link (sign-up or accept), its e-mail, and password reset links."""

import re
from datetime import timedelta

import pytest
from berth.accounts.errors import Conflict
from berth.accounts.models import Invitation, Membership
from berth.accounts.selectors import invitation_for_token, invitation_state
from berth.accounts.services import invitation_create, invitation_email_send, invitation_sign_up, team_create
from berth.audit.models import AuditEvent
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.http import Http404
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user(
        username="boss", email="boss@example.test", password="pw-123456"
    )


@pytest.fixture
def team(owner):
    return team_create(name="acme", actor=owner)


def invite(team, owner, email="new@example.test", role="member"):
    return invitation_create(team=team, email=email, role=role, actor=owner)


def test_sign_up_creates_the_user_with_the_invitations_address_and_joins(team, owner):
    invitation, token = invite(team, owner, email="New@Example.test")
    membership = invitation_sign_up(token=token, username="newbie", password="a-long-passphrase")
    user = membership.user
    assert (user.username, user.email, membership.role, membership.team) == (
        "newbie",
        "New@Example.test",
        "member",
        team,
    )
    assert user.check_password("a-long-passphrase")
    invitation.refresh_from_db()
    assert invitation.accepted_by == user and invitation_state(invitation) == "accepted"
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"user.sign_up", "invitation.accept"}


@pytest.mark.parametrize(
    ("username", "password", "field", "text"),
    [
        ("", "a-long-passphrase", "username", "is required"),
        ("has space", "a-long-passphrase", "username", "may contain only"),
        ("x" * 151, "a-long-passphrase", "username", "is 151 characters; the limit is 150"),
        ("boss", "a-long-passphrase", "username", "is taken"),
        ("BOSS", "a-long-passphrase", "username", "is taken"),
        ("newbie", "short", "password", "at least 8 characters"),
    ],
)
def test_sign_up_refusals_name_the_field_and_change_nothing(team, owner, username, password, field, text):
    _, token = invite(team, owner)
    with pytest.raises(ValidationError) as refused:
        invitation_sign_up(token=token, username=username, password=password)
    assert text in " ".join(refused.value.message_dict[field])
    assert get_user_model().objects.count() == 1
    assert Invitation.objects.get().accepted_at is None


def test_sign_up_with_an_address_that_has_an_account_says_sign_in(team, owner):
    _, token = invite(team, owner, email="BOSS@example.test")
    with pytest.raises(Conflict, match="sign in"):
        invitation_sign_up(token=token, username="other", password="a-long-passphrase")


def test_sign_up_through_a_revoked_expired_or_used_link_is_refused(team, owner):
    revoked, revoked_token = invite(team, owner, email="a@example.test")
    Invitation.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    with pytest.raises(Http404):
        invitation_sign_up(token=revoked_token, username="a", password="a-long-passphrase")
    expired, expired_token = invite(team, owner, email="b@example.test")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Conflict, match="expired"):
        invitation_sign_up(token=expired_token, username="bb", password="a-long-passphrase")
    _, used_token = invite(team, owner, email="c@example.test")
    invitation_sign_up(token=used_token, username="cc", password="a-long-passphrase")
    with pytest.raises(Conflict, match="already accepted"):
        invitation_sign_up(token=used_token, username="dd", password="a-long-passphrase")
    assert not Membership.objects.filter(user__username__in=["a", "bb", "dd"]).exists()


def test_the_link_selector_tells_the_state_and_ignores_junk(team, owner):
    invitation, token = invite(team, owner)
    assert invitation_for_token(token=token) == invitation
    assert invitation_state(invitation) == "open"
    assert invitation_for_token(token="nope") is None
    assert invitation_for_token(token="x\x00y") is None


def test_the_invitation_is_e_mailed_only_when_smtp_is_configured(team, owner, settings):
    invitation, _ = invite(team, owner)
    settings.BERTH_EMAIL_ENABLED = False
    assert "does not send e-mail" in invitation_email_send(invitation=invitation, url="http://b.test/join/t/")
    assert mail.outbox == []
    settings.BERTH_EMAIL_ENABLED = True
    assert invitation_email_send(invitation=invitation, url="http://b.test/join/t/") is None
    (sent,) = mail.outbox
    assert sent.to == ["new@example.test"] and "http://b.test/join/t/" in sent.body and "acme" in sent.subject


def test_env_smtp_reads_one_url(monkeypatch):
    from berth.core.env import env_smtp
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("T_SMTP", "smtp+starttls://me%40x.org:p%3Ass@mail.x.org")
    assert env_smtp("T_SMTP") == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.x.org",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "me@x.org",
        "EMAIL_HOST_PASSWORD": "p:ss",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
    }
    monkeypatch.setenv("T_SMTP", "https://u:secret@mail.x.org")
    with pytest.raises(ImproperlyConfigured) as refused:
        env_smtp("T_SMTP")
    assert "secret" not in str(refused.value)
    monkeypatch.delenv("T_SMTP")
    assert env_smtp("T_SMTP") == {}


# --- password reset ----------------------------------------------------------------------------------------------


def test_password_reset_mails_a_link_on_the_public_url_and_answers_the_same_for_unknown_addresses(
    client, owner, settings
):
    settings.BERTH_EMAIL_ENABLED = True
    settings.BERTH_PUBLIC_URL = "https://berth.example.org"
    known = client.post("/password-reset/", {"email": "boss@example.test"}, HTTP_HOST="evil.example")
    unknown = client.post("/password-reset/", {"email": "nobody@example.test"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/password-reset/sent/"
    (sent,) = mail.outbox
    link = re.search(r"https://berth\.example\.org(/password-reset/\S+/)", sent.body).group(1)
    assert "evil.example" not in sent.body  # the Host header a stranger sends is never the link's host
    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "brand-new-pass", "new_password2": "brand-new-pass"}
    )
    assert done["Location"] == "/password-reset/done/"
    owner.refresh_from_db()
    assert owner.check_password("brand-new-pass")
    assert b"does not work" in client.get(link, follow=True).content  # once only


def test_without_e_mail_the_reset_page_says_to_ask_an_admin(client, settings):
    settings.BERTH_EMAIL_ENABLED = False
    assert b"does not send e-mail" in client.get("/password-reset/").content
    assert client.post("/password-reset/", {"email": "boss@example.test"}).status_code == 404
    assert mail.outbox == []


def test_an_admin_makes_a_reset_link_with_manage_py(client, owner, settings, capsys):
    settings.BERTH_PUBLIC_URL = "http://127.0.0.1:8000"
    call_command("password_reset_link", "boss")
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://127.0.0.1:8000/password-reset/")
    assert (
        b"Choose a new password"
        in client.get(link.removeprefix("http://127.0.0.1:8000"), follow=True).content
    )
    assert AuditEvent.objects.filter(action="user.password_reset_link", target="boss").exists()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no active user"):
        call_command("password_reset_link", "ghost")


def test_a_platform_admin_makes_reset_links_in_the_django_admin(client, owner):
    admin_user = get_user_model().objects.create_superuser(username="root", email="", password="pw-123456")
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/", {"action": "password_reset_links", "_selected_action": [owner.pk]}
    )
    assert response.status_code == 200
    link = re.search(
        r"<code>http://testserver(/password-reset/[^<]+)</code>", response.content.decode()
    ).group(1)
    client.logout()
    assert b"Choose a new password" in client.get(link, follow=True).content
    assert AuditEvent.objects.filter(
        action="user.password_reset_link", target="boss", actor=admin_user
    ).exists()

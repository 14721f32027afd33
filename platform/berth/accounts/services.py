"""Writes for teams, memberships, invitations and API tokens. Each records an AuditEvent."""

import logging
import re
import secrets
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from berth.accounts.errors import Conflict
from berth.accounts.models import ApiToken, Invitation, Membership, Team, hash_secret
from berth.accounts.roles import OWNER, ROLES
from berth.accounts.selectors import user_role
from berth.accounts.throttles import sign_in_begin, sign_in_succeeded, token_creation_take
from berth.accounts.validators import validate_one_line_text, validate_team_name, validate_token_name
from berth.audit.services import audit_record
from berth.core.queries import compiled_rows

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "berth_"
INVITATION_TTL = timedelta(days=7)
# Writing last_used_at on every request would turn every API read into a write; once a minute is plenty.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
TOKEN_MAX_DAYS = 3650


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError({"role": f"must be one of {', '.join(ROLES)}"})


def team_create(*, name: str, actor: AbstractBaseUser, remote_addr: str | None = None) -> Team:
    """Create a team; its creator becomes its owner."""
    validate_team_name(name)
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name)
            Membership.objects.create(user=actor, team=team, role=OWNER)
            audit_record(action="team.create", actor=actor, team=team, target=name, remote_addr=remote_addr)
    except IntegrityError:
        raise Conflict(f"team {name!r} already exists") from None
    return team


def _guard_owner_change(*, team: Team, actor, old_role: str | None, new_role: str | None) -> None:
    # Admins manage members, but only an owner may create or remove an owner.
    if OWNER in (old_role, new_role) and old_role != new_role and user_role(user=actor, team=team) != OWNER:
        raise PermissionDenied("only an owner can grant or remove the owner role")


def _owners_left_after(*, team: Team, membership: Membership) -> int:
    # Lock the owners so two concurrent demotions cannot both see "another owner remains".
    owners = list(
        Membership.objects.select_for_update().filter(team=team, role=OWNER).values_list("id", flat=True)
    )
    return len([pk for pk in owners if pk != membership.pk])


def membership_add(
    *, team: Team, user: AbstractBaseUser, role: str, actor, remote_addr: str | None = None
) -> Membership:
    """Add an existing user to a team with a role."""
    _check_role(role)
    _guard_owner_change(team=team, actor=actor, old_role=None, new_role=role)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(user=user, team=team, role=role)
            audit_record(
                action="membership.add",
                actor=actor,
                team=team,
                target=user.get_username(),
                remote_addr=remote_addr,
                data={"role": role},
            )
    except IntegrityError:
        raise Conflict(f"{user.get_username()} is already a member of {team.name}") from None
    return membership


def membership_role_change(
    *, membership: Membership, role: str, actor, remote_addr: str | None = None
) -> Membership:
    """Change a member's role; the last owner cannot be demoted."""
    _check_role(role)
    _guard_owner_change(team=membership.team, actor=actor, old_role=membership.role, new_role=role)
    with transaction.atomic():
        if membership.role == OWNER and role != OWNER:
            if _owners_left_after(team=membership.team, membership=membership) == 0:
                raise Conflict("the last owner cannot be demoted; make someone else owner first")
        old = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
        audit_record(
            action="membership.role_change",
            actor=actor,
            team=membership.team,
            target=membership.user.get_username(),
            remote_addr=remote_addr,
            data={"from": old, "to": role},
        )
    return membership


def membership_remove(*, membership: Membership, actor, remote_addr: str | None = None) -> None:
    """Remove a member; the last owner cannot be removed."""
    _guard_owner_change(team=membership.team, actor=actor, old_role=membership.role, new_role=None)
    with transaction.atomic():
        if membership.role == OWNER and _owners_left_after(team=membership.team, membership=membership) == 0:
            raise Conflict("the last owner cannot be removed; make someone else owner first")
        membership.delete()
        audit_record(
            action="membership.remove",
            actor=actor,
            team=membership.team,
            target=membership.user.get_username(),
            remote_addr=remote_addr,
        )


def invitation_create(
    *, team: Team, email: str, role: str, actor, remote_addr: str | None = None
) -> tuple[Invitation, str]:
    """Invite an email address to a team. Returns the invitation and its clear token (shown once)."""
    _check_role(role)
    try:
        validate_one_line_text(email, field="email", max_length=254)
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "is not a valid email address"}) from None
    _guard_owner_change(team=team, actor=actor, old_role=None, new_role=role)
    clear = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            token_hash=hash_secret(clear),
            invited_by=actor,
            expires_at=timezone.now() + INVITATION_TTL,
        )
        audit_record(
            action="invitation.create",
            actor=actor,
            team=team,
            target=email,
            remote_addr=remote_addr,
            data={"role": role, "invitation": invitation.pk},
        )
    return invitation, clear


def _invitation_locked(token: str) -> Invitation:
    """The invitation of a token, locked for the redemption under way; Http404 when unknown or revoked."""
    if not isinstance(token, str) or not token:
        raise ValidationError({"token": "is required"})
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("team")
        .filter(token_hash=hash_secret(token))
        .first()
    )
    if invitation is None or invitation.revoked_at is not None:
        raise Http404("invitation not found")
    return invitation


def _invitation_check_open(invitation: Invitation, now: datetime) -> None:
    if invitation.accepted_at is not None:
        raise Conflict("this invitation was already accepted")
    if invitation.expires_at <= now:
        raise Conflict("this invitation has expired; ask for a new one")


def _invitation_redeem(
    *, invitation: Invitation, user: AbstractBaseUser, now: datetime, remote_addr: str | None, signed_up: bool
) -> Membership:
    membership, created = Membership.objects.get_or_create(
        user=user, team=invitation.team, defaults={"role": invitation.role}
    )
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=now, accepted_by=user)
    data = {"role": membership.role, "invitation": invitation.pk, "joined": created}
    if signed_up:
        data["signed_up"] = user.get_username()
    audit_record(
        action="invitation.accept",
        actor=user,
        team=invitation.team,
        target=invitation.email,
        remote_addr=remote_addr,
        data=data,
    )
    return membership


def invitation_accept(*, token: str, user: AbstractBaseUser, remote_addr: str | None = None) -> Membership:
    """Redeem an invitation token: the user joins the team (a user already in it keeps the role they have)."""
    if not isinstance(token, str) or not token:
        raise ValidationError({"token": "is required"})
    now = timezone.now()
    with transaction.atomic():
        invitation = _invitation_locked(token)
        # Bound to the address it was sent to: a token that leaked (a forwarded mail, a shared screen) admits nobody
        # else. Checked first, so a wrong holder learns nothing of the invitation's state either.
        if (user.email or "").casefold() != invitation.email.casefold():
            raise PermissionDenied(
                "this invitation was sent to another email address than your account's; "
                "accept it signed in as the account with that address"
            )
        _invitation_check_open(invitation, now)
        return _invitation_redeem(
            invitation=invitation, user=user, now=now, remote_addr=remote_addr, signed_up=False
        )


def invitation_sign_up(
    *, token: str, username: str, password: str, remote_addr: str | None = None
) -> Membership:
    """A person without an account joins through an invitation link: creates their user with the invitation's
    e-mail address (never one they choose: the link is bound to it), the chosen username and password, makes them a
    member with the invited role and marks the invitation accepted. All or nothing."""
    user_model = get_user_model()
    username_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    if not isinstance(username, str) or not username:
        raise ValidationError({"username": "is required"})
    if len(username) > username_field.max_length:
        raise ValidationError(
            {"username": f"is {len(username)} characters; the limit is {username_field.max_length}"}
        )
    try:
        for validator in username_field.validators:
            validator(username)
    except ValidationError:
        raise ValidationError(
            {"username": "may contain only letters, digits and @ . + - _ (no spaces)"}
        ) from None
    now = timezone.now()
    with transaction.atomic():
        invitation = _invitation_locked(token)
        _invitation_check_open(invitation, now)
        if user_model.objects.filter(email__iexact=invitation.email).exists():
            # one account per address: the holder of the link has it, so they can sign in and accept
            raise Conflict(
                f"an account with the address {invitation.email} already exists: sign in with it to accept"
            )
        if user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__iexact": username}).exists():
            raise ValidationError({"username": f"{username!r} is taken; choose another"})
        candidate = user_model(**{user_model.USERNAME_FIELD: username}, email=invitation.email)
        if not isinstance(password, str) or not password:
            raise ValidationError({"password": "is required"})
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
        candidate.set_password(password)
        try:
            with transaction.atomic():
                candidate.save()
        except IntegrityError:
            raise ValidationError({"username": f"{username!r} is taken; choose another"}) from None
        audit_record(
            action="user.sign_up",
            actor=candidate,
            team=invitation.team,
            target=username,
            remote_addr=remote_addr,
            data={"invitation": invitation.pk},
        )
        return _invitation_redeem(
            invitation=invitation, user=candidate, now=now, remote_addr=remote_addr, signed_up=True
        )


def invitation_email_send(*, invitation: Invitation, url: str) -> str | None:
    """E-mail the invitation link to the invited address when this server sends e-mail (BERTH_SMTP_URL).

    Returns None when it was sent, else why not, for the person who invited (they can still send the link
    themselves). The link holds the clear token, so it is sent here and now, never queued in the broker."""
    if not settings.BERTH_EMAIL_ENABLED:
        return "this server does not send e-mail (BERTH_SMTP_URL is not set)"
    inviter = invitation.invited_by.get_username() if invitation.invited_by else "An admin"
    body = (
        f"{inviter} invited you to the team {invitation.team.name} on Berth as {invitation.role}.\n\n"
        f"Open this link to join (it works until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n\n{url}\n\n"
        "If you did not expect this, ignore this message.\n"
    )
    try:
        send_mail(
            f"Join {invitation.team.name} on Berth",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [invitation.email],
        )
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("invitation %s: e-mail not sent: %s", invitation.pk, exc)
        return f"the mail server did not take it ({type(exc).__name__}: {exc})"
    return None


def password_reset_link_parts(
    *, user: AbstractBaseUser, actor=None, remote_addr: str | None = None
) -> tuple[str, str]:
    """The (uidb64, token) pair of a password reset link for `user`, made by a platform admin (the Django admin
    or `manage.py password_reset_link`). Django's token: it stops working once the password changes or after
    PASSWORD_RESET_TIMEOUT. Audited, so a link made for someone shows who made it."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    audit_record(
        action="user.password_reset_link",
        actor=actor,
        target=user.get_username(),
        remote_addr=remote_addr,
    )
    return uidb64, token


def invitation_revoke(*, invitation: Invitation, actor, remote_addr: str | None = None) -> None:
    """Withdraw an invitation that was not accepted yet."""
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
            revoked_at=timezone.now()
        )
        if not updated:
            raise Conflict("this invitation was already accepted or revoked")
        audit_record(
            action="invitation.revoke",
            actor=actor,
            team=invitation.team,
            target=invitation.email,
            remote_addr=remote_addr,
            data={"invitation": invitation.pk},
        )


def token_create(
    *,
    user: AbstractBaseUser,
    name: str,
    expires_in_days: int | None = None,
    remote_addr: str | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token, valid for `expires_in_days` days (None: until revoked).

    Returns the row and the clear token, which is never available again."""
    validate_token_name(name)
    expires_at = None
    if expires_in_days is not None:
        if (
            not isinstance(expires_in_days, int)
            or isinstance(expires_in_days, bool)
            or not 1 <= expires_in_days <= TOKEN_MAX_DAYS
        ):
            raise ValidationError(
                {"expires_in_days": f"must be a whole number of days from 1 to {TOKEN_MAX_DAYS}"}
            )
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            token_hash=hash_secret(clear),
            prefix=clear[: len(TOKEN_PREFIX) + 6],
            expires_at=expires_at,
        )
        audit_record(
            action="token.create",
            actor=user,
            target=name,
            remote_addr=remote_addr,
            data={"token": token.pk, "expires_at": expires_at.isoformat() if expires_at else None},
        )
    return token, clear


def token_revoke(*, token: ApiToken, actor, remote_addr: str | None = None) -> None:
    """Revoke a token; it stops authenticating at once."""
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
        audit_record(
            action="token.revoke",
            actor=actor,
            target=token.name,
            remote_addr=remote_addr,
            data={"token": token.pk},
        )


def _token_with_user(token_hash: str) -> ApiToken | None:
    """The one token of that hash (unique) with its user, judged by the caller rather than in SQL. Every request
    with a token asks: its SQL is compiled once (berth.core.queries) and the instances made from the row."""
    user_model = get_user_model()
    token_columns = [field.attname for field in ApiToken._meta.concrete_fields]
    user_columns = [field.attname for field in user_model._meta.concrete_fields]

    def build(token_hash: str) -> QuerySet:
        columns = [*token_columns, *(f"user__{column}" for column in user_columns)]
        return ApiToken.objects.filter(token_hash=token_hash).order_by().values(*columns)[:1]

    rows = compiled_rows(("token_with_user",), build, token_hash=token_hash)
    if not rows:
        return None
    row = rows[0]
    token = ApiToken.from_db(DEFAULT_DB_ALIAS, token_columns, [row[column] for column in token_columns])
    token.user = user_model.from_db(
        DEFAULT_DB_ALIAS, user_columns, [row[f"user__{column}"] for column in user_columns]
    )
    return token


def token_authenticate(*, clear: str, now: datetime | None = None) -> ApiToken | None:
    """The live token for a clear value (not revoked, not expired, its user active), or None.

    Every way in (API, git, WebSocket) asks this one function. Touches last_used_at at most once a minute."""
    if not clear or not clear.startswith(TOKEN_PREFIX):
        return None
    now = now or timezone.now()
    token = _token_with_user(hash_secret(clear))
    if (
        token is None
        or token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
        or not token.user.is_active
    ):
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        # Conditional, so concurrent requests write it once.
        stale = now - TOKEN_TOUCH_INTERVAL
        ApiToken.objects.filter(Q(last_used_at=None) | Q(last_used_at__lte=stale), pk=token.pk).update(
            last_used_at=now
        )
        token.last_used_at = now
    return token


def sign_in(*, request, username: str, password: str, remote_addr: str | None) -> AbstractBaseUser | None:
    """Check a username and password under the brute-force guard (berth.accounts.throttles): the active user, or
    None for a wrong pair. Raises Throttled, without looking at the password, while the account or the client
    address has had too many failures lately; a success is never counted."""
    attempt = sign_in_begin(username=username, remote_addr=remote_addr)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        return None
    sign_in_succeeded(attempt)
    return user


def token_sign_in(
    *,
    request,
    username: str,
    password: str,
    name: str,
    expires_in_days: int | None = None,
    remote_addr: str | None = None,
) -> tuple[ApiToken, str] | None:
    """Sign in (sign_in: under the brute-force guard) and create an API token for the user (token_create), or
    None for a wrong username or password. What `berth login` asks."""
    user = sign_in(request=request, username=username, password=password, remote_addr=remote_addr)
    if user is None:
        return None
    return token_create(user=user, name=name, expires_in_days=expires_in_days, remote_addr=remote_addr)


def token_create_throttled(
    *, user: AbstractBaseUser, name: str, expires_in_days: int | None = None, remote_addr: str | None = None
) -> tuple[ApiToken, str]:
    """token_create for a signed-in user asking for one more token: counted against the token-creation throttle
    first (berth.accounts.throttles.token_creation_take raises Throttled past it)."""
    token_creation_take(user=user, remote_addr=remote_addr)
    return token_create(user=user, name=name, expires_in_days=expires_in_days, remote_addr=remote_addr)


# --- personal teams and platform admins' user management --------------------------------------------------------

PERSONAL_TEAM_TRIES = 20


def personal_team_name(username: str) -> str:
    """A valid team name from a username (lowercase letters, digits and hyphens, a letter first, 2–30 long)."""
    name = re.sub(r"[^a-z0-9]+", "-", username.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"u-{name}".rstrip("-")
    name = name[:30].rstrip("-")
    return name if len(name) >= 2 else "user"


def personal_team_ensure(*, user: AbstractBaseUser, remote_addr: str | None = None) -> Team:
    """The team a user in no team creates apps in, as Heroku's personal apps: made on first need, named after
    them (a number added when the name is taken), owned by them. A user in some team gets that one back."""
    with transaction.atomic():
        # two first requests of one user at once make one team, not two
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        joined = Team.objects.filter(memberships__user=user).order_by("pk").first()
        if joined is not None:
            return joined
        base = personal_team_name(user.get_username())
        for number in range(1, PERSONAL_TEAM_TRIES + 1):
            suffix = "" if number == 1 else f"-{number}"
            name = base[: 30 - len(suffix)].rstrip("-") + suffix
            if Team.objects.filter(name=name).exists():
                continue
            try:
                with transaction.atomic():
                    return team_create(name=name, actor=user, remote_addr=remote_addr)
            except Conflict:
                continue  # taken meanwhile by someone else
    raise Conflict(f"no free team name for {user.get_username()!r}; create a team first (berth teams:create)")


def password_reset_url(*, user: AbstractBaseUser, actor=None, remote_addr: str | None = None) -> str:
    """The dashboard's password reset link for `user` on BERTH_PUBLIC_URL (password_reset_link_parts)."""
    uidb64, token = password_reset_link_parts(user=user, actor=actor, remote_addr=remote_addr)
    path = reverse("dashboard:password-reset-confirm", kwargs={"uidb64": uidb64, "token": token})
    return settings.BERTH_PUBLIC_URL.rstrip("/") + path


def user_create(
    *, username: str, email: str, actor, platform_admin: bool = False, remote_addr: str | None = None
) -> AbstractBaseUser:
    """A platform admin creates an account with no usable password: the person sets one through the reset link
    the admin hands over (password_reset_url). Conflict when the username or e-mail address is taken."""
    User = get_user_model()
    if not isinstance(username, str) or not username:
        raise ValidationError({"username": "is required"})
    try:
        for validator in User._meta.get_field("username").validators:
            validator(username)
    except ValidationError as exc:
        raise ValidationError({"username": " ".join(exc.messages)}) from None
    if not isinstance(email, str) or not email:
        raise ValidationError({"email": "is required"})
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "is not a valid e-mail address"}) from None
    if not isinstance(platform_admin, bool):
        raise ValidationError({"platform_admin": "must be true or false"})
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise Conflict(f"a user with the e-mail address {email} already exists")
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=username, email=email, password=None)
        except IntegrityError:
            raise Conflict(f"a user named {username!r} already exists") from None
        if platform_admin:
            User.objects.filter(pk=user.pk).update(is_superuser=True, is_staff=True)
            user.refresh_from_db()
        audit_record(
            action="user.create",
            actor=actor,
            target=username,
            remote_addr=remote_addr,
            data={"platform_admin": platform_admin},
        )
    return user


def user_set_active(*, user: AbstractBaseUser, active: bool, actor, remote_addr: str | None = None) -> None:
    """Disable (or enable again) an account: a disabled user cannot sign in, and their API tokens and signed-in
    sessions stop working at once (every way in checks is_active). An admin cannot disable themselves."""
    if not isinstance(active, bool):
        raise ValidationError({"is_active": "must be true or false"})
    if not active and actor is not None and user.pk == actor.pk:
        raise Conflict("you cannot disable your own account")
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=active)
        user.is_active = active
        audit_record(
            action="user.enable" if active else "user.disable",
            actor=actor,
            target=user.get_username(),
            remote_addr=remote_addr,
        )

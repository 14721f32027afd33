"""Joining a team through an invitation link, and getting back in with a password reset link.

An invitation link (/join/<token>/) puts its token in the session and sends the browser on to /join/, so the token
leaves the address bar and the history, and survives a sign-in on the way (Django's login keeps the session's data).
There a person without an account chooses a username and password (the e-mail address is the invitation's, not
theirs to choose) and lands in the team; someone signed in accepts with one click when the address is their
account's, and is told plainly why not otherwise. Password reset is Django's PasswordResetView family with the
dashboard's templates; the e-mailed link is built on BERTH_PUBLIC_URL, never on the Host header a stranger sends.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.password_validation import password_validators_help_texts
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.dashboard.common import SESSION_TEAM, client_ip, page
from berth.dashboard.forms import service_refusal

SESSION_INVITATION = "berth_invitation"
# what a dead link says, by the invitation's state (the HTTP status says it to scripts: gone, or never there)
CLOSED = {
    "unknown": (
        404,
        "This invitation link is not valid",
        "No invitation has this link: it may be mistyped or cut.",
    ),
    "revoked": (
        410,
        "This invitation was revoked",
        "Whoever invited you withdrew it; ask them for a new one.",
    ),
    "expired": (410, "This invitation has expired", "Invitations work for 7 days; ask for a new one."),
    "accepted": (410, "This invitation was already used", "Each link joins one person, once."),
}


@require_GET
def invitation_open(request: HttpRequest, token: str) -> HttpResponse:
    request.session[SESSION_INVITATION] = token
    return redirect("dashboard:join")


def _page(request: HttpRequest, template: str, context: dict, status: int) -> HttpResponse:
    # the frame (team switcher, nodes link) is for people signed in; a stranger with a link gets the bare page
    if request.user.is_authenticated:
        return page(request, template, context, status=status)
    return render(request, template, context, status=status)


def _closed(request: HttpRequest, state: str, invitation=None) -> HttpResponse:
    status, title, text = CLOSED[state]
    context = {"title": title, "text": text, "state": state, "invitation": invitation}
    return _page(request, "dashboard/join_closed.html", context, status=status)


def _landed(request: HttpRequest, membership) -> HttpResponse:
    request.session.pop(SESSION_INVITATION, None)
    request.session[SESSION_TEAM] = membership.team.name
    messages.success(request, f"Welcome to {membership.team.name}: you joined as {membership.role}.")
    return redirect("dashboard:apps")


@never_cache
@sensitive_post_parameters("password", "password2")
def join(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    token = request.session.get(SESSION_INVITATION, "")
    invitation = accounts_selectors.invitation_for_token(token=token)
    if invitation is None:
        return _closed(request, "unknown")
    state = accounts_selectors.invitation_state(invitation)
    if state != "open":
        return _closed(request, state, invitation)
    user = request.user
    signed_in = user.is_authenticated
    address_matches = signed_in and (user.email or "").casefold() == invitation.email.casefold()
    values = {"username": ""}
    errors: dict = {}
    if request.method == "POST":
        if signed_in:
            membership, errors = service_refusal(
                accounts_services.invitation_accept,
                fields=(),
                token=token,
                user=user,
                remote_addr=client_ip(request),
            )
        else:
            values["username"] = request.POST.get("username", "").strip()
            password, again = request.POST.get("password", ""), request.POST.get("password2", "")
            if password != again:
                membership, errors = None, {"password2": "does not match the password above"}
            else:
                membership, errors = service_refusal(
                    accounts_services.invitation_sign_up,
                    fields=("username", "password"),
                    token=token,
                    username=values["username"],
                    password=password,
                    remote_addr=client_ip(request),
                )
            if membership is not None:
                login(request, membership.user, backend=settings.AUTHENTICATION_BACKENDS[0])
        if membership is not None:
            return _landed(request, membership)
    context = {
        "invitation": invitation,
        "signed_in": signed_in,
        "address_matches": address_matches,
        "values": values,
        "errors": errors,
        "password_rules": password_validators_help_texts(),
    }
    return _page(request, "dashboard/join.html", context, status=400 if errors else 200)


# --- password reset ----------------------------------------------------------------------------------------------


class PasswordResetView(auth_views.PasswordResetView):
    """Django's: the same answer whether or not an account has the address (no account enumeration)."""

    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("dashboard:password-reset-done")

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "email_enabled": settings.BERTH_EMAIL_ENABLED}

    def post(self, request, *args, **kwargs):
        if not settings.BERTH_EMAIL_ENABLED:
            raise Http404("this server does not send e-mail")
        self.extra_email_context = {"public_url": settings.BERTH_PUBLIC_URL.rstrip("/")}
        return super().post(request, *args, **kwargs)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("dashboard:password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"

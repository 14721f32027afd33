"""The app page's first-deploy walkthrough: one click makes a deploy token and shows, once, the exact
`git remote add berth` line that carries it (git's HTTP Basic password is an API token; the username is only a label,
berth.gitserver.seams.TokenGitAccess)."""

from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from berth.accounts import services as accounts_services
from berth.accounts.roles import MEMBER
from berth.accounts.selectors import user_role
from berth.accounts.throttles import GuardUnavailable, Throttled
from berth.apps import selectors as apps_selectors
from berth.dashboard.common import SESSION_SHOWN_ONCE, client_ip
from berth.dashboard.forms import service_refusal
from berth.dashboard.views import app_page


def git_remote_line(*, scheme: str, host: str, username: str, token: str, app: str) -> str:
    """`git remote add berth <scheme>://<user>:<token>@<host>/git/<app>.git`, the username quoted for a URL (it
    may hold @ or +)."""
    return f"git remote add berth {scheme}://{quote(username, safe='')}:{token}@{host}/git/{app}.git"


@login_required
@require_POST
def deploy_token_create(request: HttpRequest, app: str) -> HttpResponse:
    app = apps_selectors.app_for_user(user=request.user, name=app, min_role=MEMBER)
    result, errors = service_refusal(
        accounts_services.token_create_throttled,
        fields=(),
        errors=(Throttled, GuardUnavailable),
        user=request.user,
        name=f"git push {app.name}",
        remote_addr=client_ip(request),
    )
    if errors:
        role = user_role(user=request.user, team=app.team)
        return app_page(request, app, role, refused={"deploy_token": {"errors": errors, "values": {}}})
    _, clear = result
    line = git_remote_line(
        scheme=request.scheme,
        host=request.get_host(),
        username=request.user.get_username(),
        token=clear,
        app=app.name,
    )
    # shown by the walkthrough, once: the page pops it from the session as it renders it (berth.dashboard.common)
    request.session[SESSION_SHOWN_ONCE] = {
        "label": "In your app's repository, add the remote (copy it now: the token in it is shown only once):",
        "secret": line,
        "place": "first-deploy",
        "app": app.name,
    }
    return redirect(reverse("dashboard:app", kwargs={"app": app.name}) + "#first-deploy")

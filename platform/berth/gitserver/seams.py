"""The two parts of the git server that its own tests replace: who may fetch or push, and what a push does.

`GitAccess` decides who may read or push which app: Berth's is TokenGitAccess below (an API token as the HTTP
Basic password, roles as in the API). `GitPushHandler` is told about a push of the deploy branch while the
pre-receive hook waits (in the web process, berth.gitserver.relay; `pusher` is the GitTarget's user_label) and
accepts or refuses it: Berth's is berth.previews.git.BuildOnPushWithPreviews (build, then deploy; other branches
make preview apps through its optional `on_branch`).
Both are chosen here. The git protocol tests (tests/gitserver) serve pushes without a database or a builder: they
put fakes in with the setters, in the test process and, through their settings' AppConfig.ready(), in the
servers and hook processes they start.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from berth.accounts.roles import MEMBER, VIEWER, role_at_least
from berth.accounts.selectors import token_expired_at, user_role
from berth.accounts.services import token_authenticate
from berth.apps.models import App
from berth.builds.repos import repo_path
from berth.previews.git import BuildOnPushWithPreviews


@dataclass(frozen=True)
class GitTarget:
    """What an authorized request may touch: the app, its bare repository, the branch that deploys, who asked."""

    app_name: str
    repo_path: Path
    deploy_branch: str
    user_label: str


class GitDenied(Exception):
    """Raised by GitAccess.authorize: 401 bad or missing token, 403 read-only role pushing, 404 unknown app."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class GitAccess(Protocol):
    def authorize(self, *, app_name: str, token: str, write: bool) -> GitTarget: ...


class GitPushHandler(Protocol):
    def on_push(
        self,
        *,
        app_name: str,
        ref: str,
        old: str,
        new: str,
        repo_path: Path,
        write_line: Callable[[str], None],
        pusher: str,
    ) -> bool: ...


class TokenGitAccess:
    """HTTP Basic with any username and an API token as the password; roles as in the API."""

    def authorize(self, *, app_name: str, token: str, write: bool) -> GitTarget:
        api_token = token_authenticate(clear=token) if token else None
        if api_token is None:
            expired = token_expired_at(clear=token) if token else None
            if expired is not None:
                raise GitDenied(
                    401,
                    f"authentication failed: your token expired on {expired:%Y-%m-%d %H:%M} UTC; create a new one",
                )
            raise GitDenied(
                401, "authentication failed: use an API token (berth tokens:create) as the password"
            )
        user = api_token.user
        app = App.objects.select_related("team").filter(name=app_name).first()
        role = user_role(user=user, team=app.team) if app else None
        if app is None or role is None:
            raise GitDenied(404, f"no app named {app_name}")
        needed = MEMBER if write else VIEWER
        if not role_at_least(role, needed):
            raise GitDenied(403, f"pushing to {app_name} needs the {needed} role; you are {role}")
        # The view sets the repository up (berth.gitserver.services.repo_ensure) before git touches it.
        return GitTarget(
            app_name=app.name,
            repo_path=repo_path(app_name=app.name),
            deploy_branch=app.deploy_branch,
            user_label=user.get_username(),
        )


_access: GitAccess = TokenGitAccess()
_push_handler: GitPushHandler = BuildOnPushWithPreviews()


def set_git_access(access: GitAccess) -> None:
    global _access
    _access = access


def get_git_access() -> GitAccess:
    return _access


def set_push_handler(handler: GitPushHandler) -> None:
    global _push_handler
    _push_handler = handler


def get_push_handler() -> GitPushHandler:
    return _push_handler

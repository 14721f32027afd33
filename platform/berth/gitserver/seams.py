"""The two seams between the git server and the rest of Berth.

`GitAccess` decides who may read or push which app (the accounts/apps domains install one backed by their models);
`GitPushHandler` is told about a push of the deploy branch from inside the pre-receive hook and accepts or refuses
it (the builds domain installs one that builds and deploys). Both are installed with the setters below, typically
from an AppConfig.ready(): ready() runs in the web process and in every hook process, so both see the same seams.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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
    ) -> bool: ...


class DenyAllAccess:
    """Until the project installs its GitAccess nobody gets in: a git server must not start open."""

    def authorize(self, *, app_name: str, token: str, write: bool) -> GitTarget:
        raise GitDenied(401, "git access is not configured on this Berth")


class AcceptAllPushHandler:
    """Accepts every push of the deploy branch without doing anything (no builder installed yet)."""

    def on_push(self, *, app_name, ref, old, new, repo_path, write_line) -> bool:
        return True


_access: GitAccess = DenyAllAccess()
_push_handler: GitPushHandler = AcceptAllPushHandler()


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

"""The repository store: one bare git repository per app under BERTH_HOME/repos.

Builds read pushed commits from here (a rebuild exports a tree, the worker moves a ref when the pusher left) and
the git server (berth.gitserver) serves these repositories over HTTP; both take the names, paths and locks from
this module, so there is one answer to "where is this app's repository".
"""

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

# Validated at the edge (URL pattern, hook) and again here: these names become filesystem paths.
APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,29}")
BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")

# Inside each repository: held by the pre-receive hook for the whole of a push (one push per app at a time), and
# taken by the build worker to learn that the pusher left.
PUSH_LOCK_NAME = "berth-push.lock"


def is_valid_app_name(name: str) -> bool:
    return bool(APP_NAME_RE.fullmatch(name))


def is_valid_branch(name: str) -> bool:
    return (
        bool(BRANCH_RE.fullmatch(name))
        and ".." not in name
        and "//" not in name
        and not name.endswith((".lock", "/", "."))
    )


def repos_root() -> Path:
    return Path(settings.BERTH_HOME) / "repos"


def repo_path(*, app_name: str) -> Path:
    if not is_valid_app_name(app_name):
        raise ValueError(f"invalid app name {app_name!r}")
    return repos_root() / f"{app_name}.git"


def ref_value(*, repo: Path, ref: str) -> str | None:
    """The object a ref points at, or None when it does not exist."""
    result = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{object}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def _setup_lock_path(app_name: str) -> Path:
    return repos_root() / f".{app_name}.lock"


@contextlib.contextmanager
def repo_setup_lock(*, app_name: str) -> Iterator[None]:
    """Serialize setting up one app's repository (two first requests for one app may race)."""
    root = repos_root()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(_setup_lock_path(app_name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def repo_delete(*, app_name: str) -> bool:
    """Remove the app's repository (when the app is destroyed). Returns whether there was one."""
    path = repo_path(app_name=app_name)
    if not path.exists():
        return False
    # Renamed first so a concurrent request never sees half a repository.
    trash = repos_root() / f".{app_name}.deleted.{uuid.uuid4().hex}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _setup_lock_path(app_name).unlink()
    return True


def pushed_objects_link(*, source: Path, target: Path) -> None:
    """Link every object file under `source` (a receive-pack quarantine) into the object store `target`, packs
    before their indexes (a reader that finds an index must find its pack); a copy where a link is impossible,
    git's temporary files skipped, what is already there left alone."""
    files = [path for path in source.rglob("*") if path.is_file() and not path.name.startswith("tmp_")]
    for path in sorted(files, key=lambda p: p.suffix == ".idx"):
        destination = target / path.relative_to(source)
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(path, destination)

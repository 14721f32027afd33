"""Reads: where an app's repository lives, and what its refs point at."""

import re
import subprocess
from pathlib import Path

from django.conf import settings

# Validated at the edge (URL pattern, hook) and again here: these names become filesystem paths.
APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,29}")
BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")


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

"""Tiny helpers that read settings from the environment and fail loudly when one is wrong.

A value may also come from a file named by `<NAME>_FILE` (for secrets mounted by systemd or Docker).
"""

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def env(name: str, default: str | None = None) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
    raw = env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = env(name, default) or default
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must start with one of {', '.join(s + '://' for s in schemes)}; got {value!r}"
        )
    return value


def env_registry(name: str) -> str:
    """A registry address `host:port` (no scheme, no path), or "" when unset: the registry is then off."""
    value = (env(name) or "").strip()
    if value and not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?", value):
        raise ImproperlyConfigured(f"{name} must be host:port (e.g. 10.0.0.5:5000) or empty, got {value!r}")
    return value


def secret_from_home(home: Path, name: str, make) -> str:
    """Read a generated secret kept in BERTH_HOME, creating it (mode 0600) on the first run."""
    path = home / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = make()
    # written aside and linked into place: processes starting together (web, worker) all read the one winner
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    try:
        os.link(partial, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        partial.unlink(missing_ok=True)
    return value

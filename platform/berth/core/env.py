"""Tiny helpers that read settings from the environment and fail loudly when one is wrong.

A value may also come from a file named by `<NAME>_FILE` (for secrets mounted by systemd or Docker).
"""

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _tighten(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when it allows more than that (a 0755 home an older Berth made, a 0644 key). Left
    alone: a folder shared on purpose (sticky and world-writable, like /tmp named as BERTH_HOME by mistake) and
    anything another user owns (not ours to change)."""
    info = path.stat()
    current = info.st_mode & 0o7777
    if current & ~mode & 0o777 == 0 or info.st_uid != os.geteuid():
        return
    if stat.S_ISDIR(info.st_mode) and current & stat.S_ISVTX and current & 0o002:
        return
    path.chmod(mode)


def private_dir(path: Path) -> Path:
    """`path` created if missing, 0700: only Berth's own user may enter it (and so read anything below)."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path, *, create: bool = False) -> None:
    """`path` 0600 if it exists (created empty with that mode when `create`): only Berth's own user reads it."""
    if create and path.parent.is_dir():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    if path.exists():
        _tighten(path, PRIVATE_FILE)


def home_make_private(home: Path, *, sqlite_database: Path | None = None) -> None:
    """BERTH_HOME and what is secret in it readable by Berth's user only, on every start-up: the folder and the
    git repositories' folder 0700; the generated secrets and the SQLite database (created here, so that SQLite
    never makes it 0644; its WAL and shared-memory files take the database's mode) 0600."""
    private_dir(home)
    private_dir(home / "repos")
    for name in ("secret_key", "encryption_key"):
        private_file(home / name)
    if sqlite_database is not None:
        private_file(sqlite_database, create=True)
        for suffix in ("-wal", "-shm", "-journal"):
            private_file(sqlite_database.with_name(sqlite_database.name + suffix))


def secret_from_home(home: Path, name: str, make) -> str:
    """Read a generated secret kept in BERTH_HOME, creating it (mode 0600) on the first run; a looser mode an older
    install left is tightened."""
    path = home / name
    private_dir(path.parent)
    if path.exists():
        private_file(path)
        return path.read_text().strip()
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


SMTP_SCHEMES = {"smtp": (False, False), "smtp+starttls": (True, False), "smtps": (False, True)}


def env_smtp(name: str) -> dict:
    """Django's EMAIL_* settings from one URL, e.g. smtp+starttls://user:password@mail.example.org:587
    (smtps:// for TLS from the first byte, smtp:// for neither); {} when unset: the server sends no e-mail."""
    value = (env(name) or "").strip()
    if not value:
        return {}
    parsed = urlsplit(value)
    if parsed.scheme not in SMTP_SCHEMES or not parsed.hostname:
        raise ImproperlyConfigured(
            f"{name} must look like smtp+starttls://user:password@host:587 (or smtps://, smtp://), got "
            f"{parsed.scheme or 'no scheme'}://…"  # the password is not repeated into a log
        )
    try:
        port = parsed.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port") from None
    starttls, ssl = SMTP_SCHEMES[parsed.scheme]
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parsed.hostname,
        "EMAIL_PORT": port or (465 if ssl else 587 if starttls else 25),
        "EMAIL_HOST_USER": unquote(parsed.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parsed.password or ""),
        "EMAIL_USE_TLS": starttls,
        "EMAIL_USE_SSL": ssl,
    }

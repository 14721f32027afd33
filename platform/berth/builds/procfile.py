"""The Procfile: which processes an app runs (`web: gunicorn app:app`), read from the pushed source tree.

Rules (Heroku's, a little stricter, because each process becomes a Swarm service named after it): one
`name: command` per line, names ^[a-z0-9-]+$ and at most 30 characters, `#` comments and blank lines ignored,
at most 30 processes, at most 64 KiB. `release` is the release-phase command, run once before a release goes live.
"""

import re
from pathlib import Path

from berth.builds import tree
from berth.builds.errors import ProcfileError

MAX_BYTES = 64 * 1024
MAX_PROCESSES = 30
MAX_NAME_LENGTH = 30
RELEASE_PROCESS = "release"
_NAME = re.compile(r"[a-z0-9-]+")  # fullmatch: `$` accepts a trailing newline


def parse_procfile(text: str) -> dict[str, str]:
    """Process name → command, in file order. Raises ProcfileError naming the offending line."""
    if len(text.encode()) > MAX_BYTES:
        raise ProcfileError(f"the file is larger than {MAX_BYTES // 1024} KiB")
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        if not colon:
            raise ProcfileError(f"expected `name: command`, got {_shorten(line)!r}", line=number)
        name, command = name.strip(), command.strip()
        if not _NAME.fullmatch(name):
            raise ProcfileError(
                f"process name {_shorten(name)!r} may hold only lowercase letters, digits and '-'",
                line=number,
            )
        if len(name) > MAX_NAME_LENGTH:
            raise ProcfileError(f"process name {name[:40]!r}… is longer than {MAX_NAME_LENGTH}", line=number)
        if name in processes:
            raise ProcfileError(f"process {name!r} is declared twice", line=number)
        if not command:
            raise ProcfileError(f"process {name!r} has an empty command", line=number)
        if len(processes) == MAX_PROCESSES:
            raise ProcfileError(f"more than {MAX_PROCESSES} processes", line=number)
        processes[name] = command
    return processes


def read_procfile(source_dir: Path, *, default_web_command: str) -> dict[str, str]:
    """The processes of a source tree: its Procfile, else `{"web": default_web_command}` (the buildpack's).

    With no Procfile and an empty default (the dockerfile buildpack's), it is `{}`: a release without processes
    runs the image's own CMD as `web`.
    """
    try:
        data = tree.read_bytes(Path(source_dir), "Procfile", max_bytes=MAX_BYTES)
    except tree.TooLarge:
        raise ProcfileError(f"the file is larger than {MAX_BYTES // 1024} KiB") from None
    if data is None:
        return {"web": default_web_command} if default_web_command.strip() else {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProcfileError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_procfile(text)


def _shorten(text: str, limit: int = 40) -> str:
    # an excerpt of the pusher's own line, quoted with repr() by the callers (control characters escaped)
    return text if len(text) <= limit else text[:limit] + "…"

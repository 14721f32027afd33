"""The pushed tree, read and unpacked safely: every file Berth itself reads from a push goes through here.

The worker runs as root and the tree is a tenant's. A `Procfile` that is a symbolic link to
$BERTH_HOME/encryption_key, a folder link `conf -> /var/lib/berth` read as `conf/Procfile`, a hard-to-spot
`config/../../../x`, a chain of links, or a FIFO must never make Berth read (or block on) anything outside the
tree. A link that stays inside the tree is followed, as a checkout would; a path that leads out of the tree, or
that is not a regular file, is refused with UnsafePath. Its message names the path as the push wrote it: never the
link's target, never a byte of what it points at.

Unpacking a commit (`tree_export`) is the other half: a crafted tree (made with `git mktree`) may hold both a link
`a -> /somewhere` and a file `a/b`; nothing it holds may be written through a link, or outside the folder.
"""

import os
import stat
import subprocess
import tarfile
from pathlib import Path

from berth.builds.errors import BuildError

LEADS_OUT = "leads out of the repository (a symbolic link or `..` to a path outside it)"
NOT_REGULAR = "is not a regular file (a device, FIFO or socket)"
_SHOWN_CHARACTERS = 200


class UnsafePath(BuildError):
    """A path of the pushed tree that Berth will not read or write: it leads out of the tree, or it is not a
    regular file. `path` is the path inside the tree, as the push named it."""

    def __init__(self, path: str, problem: str):
        self.path = path
        super().__init__(f"{shown(path)} {problem}; Berth reads only regular files inside the repository")


class TooLarge(BuildError):
    """A file of the pushed tree is larger than its reader accepts."""

    def __init__(self, path: str, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        super().__init__(f"{shown(path)} is larger than {max_bytes // 1024} KiB")


def shown(path: str) -> str:
    """A tenant's path as it may appear in a log line: printable, one line, not too long."""
    text = path if path.isprintable() else repr(path)[1:-1]
    return text if len(text) <= _SHOWN_CHARACTERS else text[:_SHOWN_CHARACTERS] + "…"


def _inside(root: Path, relative: str) -> Path:
    """The real path of `relative` under `root`, every link followed; UnsafePath when that is not inside root.

    A missing file is resolved too (its path as it would be): a dangling link that points out is refused as well,
    so whether a file exists outside the tree is not something a push can learn.
    """
    if not relative or os.path.isabs(relative):
        raise UnsafePath(relative, LEADS_OUT)
    base = Path(os.path.realpath(root))
    real = Path(os.path.realpath(base / relative))
    if not real.is_relative_to(base):
        raise UnsafePath(relative, LEADS_OUT)
    return real


def _lstat(path: Path, relative: str) -> os.stat_result | None:
    """The file's own status; None when it does not exist (a missing file, or a file "under" a file)."""
    try:
        status = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a loop of links (ELOOP), a name too long: nothing Berth can read
        raise UnsafePath(relative, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(status.st_mode):  # realpath leaves a link it could not resolve: a loop
        raise UnsafePath(relative, "is a loop of symbolic links")
    return status


def is_file(root: Path, relative: str) -> bool:
    """Whether the tree holds a regular file at `relative` (links inside the tree followed), as detection asks.

    False for a missing path or a folder; UnsafePath for a path out of the tree or a special file.
    """
    status = _lstat(_inside(root, relative), relative)
    if status is None or stat.S_ISDIR(status.st_mode):
        return False
    if not stat.S_ISREG(status.st_mode):
        raise UnsafePath(relative, NOT_REGULAR)
    return True


def read_bytes(root: Path, relative: str, *, max_bytes: int | None = None) -> bytes | None:
    """The bytes of the regular file at `relative` in the tree, None when there is none (missing, or a folder).

    Raises UnsafePath for a path that leads out of the tree or a special file, TooLarge past `max_bytes`.
    """
    real = _inside(root, relative)
    status = _lstat(real, relative)
    if status is None or stat.S_ISDIR(status.st_mode):
        return None
    if not stat.S_ISREG(status.st_mode):
        raise UnsafePath(relative, NOT_REGULAR)
    # O_NOFOLLOW and the inode check: what is opened is the file that was checked, even if the tree moved since;
    # O_NONBLOCK: a FIFO swapped in cannot hang the worker
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafePath(relative, f"cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        opened = os.fstat(file.fileno())
        same = (opened.st_dev, opened.st_ino) == (status.st_dev, status.st_ino)
        if not stat.S_ISREG(opened.st_mode) or not same:
            raise UnsafePath(relative, NOT_REGULAR)
        if max_bytes is not None and opened.st_size > max_bytes:
            raise TooLarge(relative, max_bytes)
        data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(relative, max_bytes)
    return data


def read_text(
    root: Path, relative: str, *, max_bytes: int | None = None, errors: str = "strict"
) -> str | None:
    """read_bytes decoded as UTF-8 (UnicodeDecodeError with errors="strict")."""
    data = read_bytes(root, relative, max_bytes=max_bytes)
    return None if data is None else data.decode("utf-8", errors)


def check_packable(root: Path, relative: str) -> None:
    """Refuse a path of the tree that a build context must not carry: a device, FIFO or socket.

    Links are carried as links (the engine resolves them inside the context, never on this machine), so they are
    not looked at here; neither is anything under a linked folder, which the context walk never enters.
    """
    mode = os.lstat(Path(root) / relative).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise UnsafePath(relative, NOT_REGULAR)


def tree_export(*, repo: Path, sha: str, into: Path) -> None:
    """Write the tree of commit `sha` of the git repository `repo` into the folder `into` (no .git folder: the
    build sees only the commit).

    `git archive` makes the tar and this function unpacks it, member by member: only files, folders and links,
    never a member under a link (git never makes one; a crafted tree does) nor outside `into`. Raises UnsafePath
    naming the member, or BuildError when git cannot read the commit. `into` may hold part of the tree then.
    """
    base = Path(os.path.realpath(into))
    archive = subprocess.Popen(
        ["git", "--git-dir", str(repo), "archive", "--format=tar", sha],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        try:
            with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                tar.extractall(base, filter=_MemberFilter())
            archive.stdout.read()  # the archive's end padding: git exits once all of it is written
        except BaseException:
            archive.kill()  # refused or failed mid-way: git may still be writing
            raise
        finally:
            archive.stdout.close()
            archive.wait()
    except tarfile.FilterError as exc:
        raise UnsafePath(exc.tarinfo.name, LEADS_OUT) from None
    except (tarfile.TarError, OSError):
        # an unknown commit (git writes nothing) or a member that cannot be written; the error's text would
        # name this machine's paths
        raise BuildError(f"cannot read commit {sha[:12]} from the repository") from None
    if archive.returncode != 0:
        raise BuildError(f"cannot read commit {sha[:12]} from the repository")


class _MemberFilter:
    """The extraction filter of tree_export: only files, folders and links, never a member through a link.

    Members come in the archive's order into an empty folder, so the links unpacked so far are all there is to
    check: a real tree never holds a path under a link, and a member named like a link would replace or follow it.
    """

    def __init__(self) -> None:
        self.links: set[tuple[str, ...]] = set()

    def __call__(self, member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
        name = member.name
        if not (member.isreg() or member.isdir() or member.issym()):
            raise UnsafePath(name, "is not a file, a folder or a symbolic link")
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if not parts or name.startswith("/") or ".." in parts:
            raise UnsafePath(name, LEADS_OUT)
        if any(parts[:length] in self.links for length in range(1, len(parts) + 1)):
            raise UnsafePath(
                name, "would be written through a symbolic link of the same tree (a crafted tree)"
            )
        if member.issym():
            self.links.add(parts)
        # the standard filter on top: nothing outside `destination`, no setuid bits, no group/other write
        return tarfile.tar_filter(member, destination)

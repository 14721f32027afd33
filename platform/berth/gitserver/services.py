"""Writes: making an app's repository servable (git config and hook), and what a push does inside the hook.

Where repositories live, their names and locks are the repository store's (berth.builds.repos).
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from berth.builds.repos import (
    PUSH_LOCK_NAME,
    is_valid_branch,
    pushed_objects_link,
    ref_value,
    repo_path,
    repo_setup_lock,
)
from berth.gitserver import conf
from berth.gitserver.seams import get_push_handler

logger = logging.getLogger(__name__)

HOOK_NAMES = ("pre-receive",)
STAMP_NAME = "berth-stamp"


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True, text=True, timeout=60)


# The pre-receive hook: a relay, not Berth. It hands the ref updates (and where git keeps the pushed objects) to the
# web process that started this push, over the socket that process passed down (BERTH_GIT_HOOK_FD, see
# berth.gitserver.relay), prints each line it answers as the pusher's `remote:` output, and exits with its
# verdict. bash (dash cannot redirect to a descriptor above 9) costs a few megabytes per push in progress; a Django
# process per push cost a hundred.
HOOK_SCRIPT = """#!/bin/bash
# Installed by Berth (berth.gitserver.services.repo_ensure), rewritten when it changes: do not edit.
# Relays this push to the Berth web process that runs git (berth.gitserver.relay) and prints its answer.
fd="${BERTH_GIT_HOOK_FD:-}"
case "$fd" in
  ''|*[!0-9]*) echo "error: pushes to this repository go through Berth's git server" >&2; exit 1 ;;
esac
{ printf 'Q%s\\n' "${GIT_QUARANTINE_PATH:-}"; cat; printf '.\\n'; } >&"$fd" || exit 1
while IFS= read -r line; do
  case "$line" in
    L*) printf '%s\\n' "${line#L}" >&2 ;;
    A) exit 0 ;;
    *) exit 1 ;;
  esac
done <&"$fd"
echo "error: Berth's git server went away during the push; nothing was changed" >&2
exit 1
"""


def _hook_script(hook: str) -> str:
    return HOOK_SCRIPT


def _repo_config() -> list[tuple[str, str]]:
    return [
        ("http.receivepack", "true"),
        # Deleting the deploy branch is refused by our hook; other branches may go.
        ("receive.denyDeletes", "false"),
        ("receive.denyNonFastForwards", "false"),
        ("receive.maxInputSize", str(conf.MAX_PUSH_BYTES)),
        # A corrupt or hostile pack is rejected before any ref moves.
        ("receive.fsckObjects", "true"),
        ("core.logAllRefUpdates", "true"),
    ]


def _write_atomically(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def repo_ensure(*, app_name: str, deploy_branch: str = "main") -> Path:
    """Create the app's bare repository on first use, and keep its config and hooks current.

    Cheap when nothing changed (one stamp file read), so the git view calls it on every request.
    """
    if not is_valid_branch(deploy_branch):
        raise ValueError(f"invalid deploy branch {deploy_branch!r}")
    path = repo_path(app_name=app_name)
    hooks = {name: _hook_script(name) for name in HOOK_NAMES}
    config = _repo_config()
    stamp = hashlib.sha256(repr((hooks, config, deploy_branch)).encode()).hexdigest()
    stamp_file = path / STAMP_NAME
    with contextlib.suppress(OSError):
        if stamp_file.read_text() == stamp:
            return path
    # Two first requests for one app may race; the second waits and then finds the stamp.
    with repo_setup_lock(app_name=app_name):
        with contextlib.suppress(OSError):
            if stamp_file.read_text() == stamp:
                return path
        if not (path / "HEAD").exists():
            # An empty template: no sample hooks, nothing we did not choose.
            _git("init", "--bare", "--quiet", "--template=", f"--initial-branch={deploy_branch}", str(path))
        for key, value in config:
            _git("--git-dir", str(path), "config", key, value)
        # Clones check out the deploy branch.
        _git("--git-dir", str(path), "symbolic-ref", "HEAD", f"refs/heads/{deploy_branch}")
        (path / "hooks").mkdir(exist_ok=True)
        for name, script in hooks.items():
            _write_atomically(path / "hooks" / name, script, 0o755)
        _write_atomically(stamp_file, stamp, 0o644)
    logger.info("git repository for %s ready at %s", app_name, path)
    return path


@dataclass(frozen=True)
class RefUpdate:
    """One line of pre-receive input."""

    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        return set(self.new) == {"0"}

    @property
    def creates(self) -> bool:
        return set(self.old) == {"0"}


def parse_ref_updates(lines: Iterable[str]) -> list[RefUpdate]:
    updates = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"unexpected pre-receive line {line!r}")
        updates.append(RefUpdate(old=parts[0], new=parts[1], ref=parts[2]))
    return updates


class PusherGone(Exception):
    """The pusher's side of a push went away (disconnected): nothing more can reach them."""


def push_lock_hold(fd: int, repo: Path, updates: list[RefUpdate]) -> None:
    """Keep the push lock until receive-pack has moved the refs, which it does after the hook exits.

    Without this the next waiting push could take the lock in between, see the old ref and deploy a commit
    whose ref update then fails. The holder inherits the lock's file description and drops it when it exits.
    """
    args = [f"{u.ref}={'' if u.deletes else u.new}" for u in updates]
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    holder = subprocess.Popen(
        # -I (isolated): nothing in the script's folder or the environment may shadow the standard library.
        [sys.executable, "-I", str(Path(__file__).with_name("lockhold.py")), str(repo), *args],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    # reaped by a thread: the web process that starts it lives on, and must not collect zombies
    threading.Thread(target=holder.wait, name="git push lock holder", daemon=True).start()


def push_decide(
    *,
    app_name: str,
    deploy_branch: str,
    repo: Path,
    updates: list[RefUpdate],
    write_line: Callable[[str], None],
    pusher: str,
) -> bool:
    """Decide a push whose lock the caller holds: True lets receive-pack move the refs, False leaves them all.

    A ref that moved since the push began is refused; the deploy branch may not be deleted; pushing it calls the
    installed GitPushHandler; other branches are accepted and not deployed.
    """
    deploy_ref = f"refs/heads/{deploy_branch}"
    for update in updates:
        current = ref_value(repo=repo, ref=update.ref)
        if (current or "0" * len(update.old)) != update.old:
            write_line(f"error: {update.ref} changed while this push waited; fetch, then push again")
            return False
    if any(update.ref == deploy_ref and update.deletes for update in updates):
        write_line("error: deleting the deploy branch is not allowed")
        return False
    handler = get_push_handler()
    on_branch = getattr(handler, "on_branch", None)  # preview apps, when the handler makes them
    for update in updates:
        if update.ref == deploy_ref or not update.ref.startswith("refs/heads/"):
            continue
        branch = update.ref.removeprefix("refs/heads/")
        handled = None
        if on_branch is not None:
            try:
                handled = on_branch(
                    app_name=app_name,
                    ref=update.ref,
                    old=update.old,
                    new=update.new,
                    repo_path=repo,
                    write_line=write_line,
                    pusher=pusher,
                    deletes=update.deletes,
                )
            except Exception as exc:
                logger.exception("preview of %s %s failed", app_name, branch)
                write_line(f"error: the preview app failed unexpectedly ({type(exc).__name__}); push refused")
                return False
        if handled is False:
            return False
        if handled is None and not update.deletes:
            write_line(f"{branch}: not deployed: only {deploy_branch} deploys")
    for update in updates:
        if update.ref != deploy_ref:
            continue
        try:
            accepted = handler.on_push(
                app_name=app_name,
                ref=update.ref,
                old=update.old,
                new=update.new,
                repo_path=repo,
                write_line=write_line,
                pusher=pusher,
            )
        except PusherGone:
            raise
        except Exception as exc:
            logger.exception("push handler failed for %s", app_name)
            write_line(f"error: the deploy failed unexpectedly ({type(exc).__name__}); push refused")
            return False
        if not accepted:
            return False
    return True


def push_receive(
    *,
    app_name: str,
    deploy_branch: str,
    repo: Path,
    updates: list[RefUpdate],
    write_line: Callable[[str], None],
    wait_seconds: float | None = None,
    pusher: str = "",
) -> bool:
    """Decide a push in this process (`manage.py git_hook`, and the tests): take the app's push lock, then
    push_decide. The git server's own hook is the relay (berth.gitserver.relay), which does the same from the
    web process.

    One push per app at a time (an flock on the repository, waited for visibly and for at most
    BERTH_GIT_PUSH_WAIT seconds).
    """
    wait = conf.PUSH_WAIT_SECONDS if wait_seconds is None else wait_seconds
    fd = os.open(repo / PUSH_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not push_lock_wait(fd, app_name=app_name, wait=wait, write_line=write_line):
            return False
        accepted = push_decide(
            app_name=app_name,
            deploy_branch=deploy_branch,
            repo=repo,
            updates=updates,
            write_line=write_line,
            pusher=pusher,
        )
        if accepted:
            push_lock_hold(fd, repo, updates)
        return accepted
    finally:
        os.close(fd)


def push_lock_wait(
    fd: int, *, app_name: str, wait: float, write_line: Callable[[str], None], gone: Callable[[], bool] = bool
) -> bool:
    """Take the app's push lock (an flock on `fd`), saying so while the previous push holds it, for at most
    `wait` seconds (then the pusher is told, and False). `gone`: the pusher left, stop waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    write_line(f"waiting for the previous push of {app_name} to finish…")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not gone():
        time.sleep(0.2)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    write_line(f"error: gave up after {wait:g}s waiting for the previous push of {app_name}; push again")
    return False


def quarantine_keep(*, repo: Path, quarantine: str) -> None:
    """Link the pushed objects from receive-pack's quarantine into the repository's own object store.

    The hook's relay decides the push in the web process, which does not share the hook's view of the quarantine
    (git shows it to the hook's own processes through their environment): linked here, the pushed commit is
    readable by the push handler, and stays readable for the worker when the pusher leaves mid-build
    (berth.builds.git.ref_move_if_pusher_left). Objects no ref reaches (a refused push) are harmless; gc prunes
    them. Packs are linked before their indexes: a reader that finds an index must find its pack. A quarantine
    outside this repository's object store is ignored.
    """
    if not quarantine:
        return
    target = (repo / "objects").resolve()
    source = Path(quarantine).resolve()
    if source.parent != target or not source.is_dir():
        return
    pushed_objects_link(source=source, target=target)

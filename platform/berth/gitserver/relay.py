"""The web side of a push's pre-receive hook: the hook is a few lines of shell (services.HOOK_SCRIPT) that relay;
the push is decided here, in a thread of the web process that runs `git http-backend` for it.

Each receive-pack request gets a socket pair: the view passes one end down to git (BERTH_GIT_HOOK_FD, inherited
by http-backend, receive-pack and the hook), a thread here serves the other. Nothing else can reach that socket,
so it needs no address and no credentials. The protocol, one line each:

    hook -> web   Q<quarantine directory>, the pre-receive lines, then `.`
    web -> hook   L<text> for each line the pusher sees (as `remote: <text>`), then A (accept) or R (refuse)

The thread takes the app's push lock (waiting visibly, as before), links the pushed objects out of git's quarantine
(services.quarantine_keep), decides with services.push_decide (the GitPushHandler seam: build and deploy), and on
accept leaves the lock to a holder until receive-pack has moved the refs. When the pusher goes away (the view stops
git's process group, every end of the socket closes) the lock is released at once, as it was when the hook process
itself held it and died: the worker then moves the ref itself when the build goes live.
"""

import fcntl
import logging
import os
import socket
import threading
from pathlib import Path

from django.db import connections

from berth.builds.repos import PUSH_LOCK_NAME
from berth.gitserver import conf
from berth.gitserver.services import (
    PusherGone,
    parse_ref_updates,
    push_decide,
    push_lock_hold,
    push_lock_wait,
    quarantine_keep,
)

logger = logging.getLogger(__name__)

HOOK_FD_VARIABLE = "BERTH_GIT_HOOK_FD"
# what the hook may send: a pre-receive line per ref (two object names and a ref name); plenty for any real push
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def hook_channel_open(*, app_name: str, deploy_branch: str, repo: Path, pusher: str) -> int:
    """Start serving the hook of one receive-pack request; returns the socket the CGI child must inherit (its
    number goes in BERTH_GIT_HOOK_FD). The caller closes it once the child started (or failed to)."""
    ours, theirs = socket.socketpair()
    session = _HookSession(ours, app_name=app_name, deploy_branch=deploy_branch, repo=repo, pusher=pusher)
    threading.Thread(target=session.serve, name=f"git push {app_name}", daemon=True).start()
    return theirs.detach()


class _HookSession:
    def __init__(self, sock: socket.socket, *, app_name: str, deploy_branch: str, repo: Path, pusher: str):
        self.sock = sock
        self.app_name, self.deploy_branch, self.repo, self.pusher = app_name, deploy_branch, repo, pusher
        self.left = threading.Event()  # every end of the hook's socket closed: the push was abandoned
        self.guard = threading.Lock()  # the lock fd is unlocked by the watcher or closed by serve, never both
        self.lock_fd: int | None = None

    def serve(self) -> None:
        try:
            request = self._read_request()
            if request is None:
                return  # no hook ran (nothing to update, or git refused the push itself)
            quarantine, lines = request
            accepted = self._decide(quarantine, lines)
            self._send("A" if accepted else "R")
        except PusherGone:
            logger.info("the pusher of %s left mid-push; its build goes on", self.app_name)
        except Exception as exc:
            logger.exception("git push of %s failed", self.app_name)
            try:
                self.write_line(
                    f"error: the push failed unexpectedly ({type(exc).__name__}); nothing was changed"
                )
                self._send("R")
            except PusherGone:
                pass
        finally:
            self._close_lock()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the watcher's recv
            except OSError:
                pass
            self.sock.close()
            connections.close_all()  # this thread's database connections

    def _read_request(self) -> tuple[str, list[str]] | None:
        data = b""
        while not data.endswith(b"\n.\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError("the hook's request is too large")
        first, *lines = data.decode("utf-8", "replace").split("\n")[:-2]
        if not first.startswith("Q"):
            raise ValueError("the hook's request does not start with its quarantine")
        return first[1:], lines

    def _decide(self, quarantine: str, lines: list[str]) -> bool:
        updates = parse_ref_updates(lines)
        quarantine_keep(repo=self.repo, quarantine=quarantine)
        self.lock_fd = os.open(self.repo / PUSH_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        threading.Thread(target=self._watch, name=f"git push {self.app_name} watcher", daemon=True).start()
        if not push_lock_wait(
            self.lock_fd,
            app_name=self.app_name,
            wait=conf.PUSH_WAIT_SECONDS,
            write_line=self.write_line,
            gone=self.left.is_set,
        ):
            return False
        accepted = push_decide(
            app_name=self.app_name,
            deploy_branch=self.deploy_branch,
            repo=self.repo,
            updates=updates,
            write_line=self.write_line,
            pusher=self.pusher,
        )
        if accepted and not self.left.is_set():
            with self.guard:
                push_lock_hold(self.lock_fd, self.repo, updates)
        return accepted

    def _watch(self) -> None:
        """The hook sends nothing after its request: the socket reads end-of-file only when every process of the
        push has closed it, i.e. when it is over or was stopped. Before a verdict that means the pusher left."""
        try:
            while self.sock.recv(4096):
                pass
        except OSError:
            pass
        self.left.set()
        with self.guard:
            if self.lock_fd is not None:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _close_lock(self) -> None:
        with self.guard:
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None

    def write_line(self, line: str) -> None:
        """One line (or several, if it holds newlines) for the pusher; PusherGone when they left."""
        if self.left.is_set():
            raise PusherGone(self.app_name)
        text = "".join(f"L{part}\n" for part in line.rstrip("\n").replace("\r", "\n").split("\n"))
        self._send(text, raw=True)

    def _send(self, text: str, *, raw: bool = False) -> None:
        try:
            self.sock.sendall((text if raw else text + "\n").encode("utf-8", "replace"))
        except OSError as exc:
            self.left.set()
            raise PusherGone(self.app_name) from exc

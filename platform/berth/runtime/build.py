"""Image builds on the engine: a build context in, output lines streamed, an image id out; and `docker import`.

The engine's build runs through the SDK's low-level `APIClient.build` (the engine's legacy builder), so every
line reaches the caller as the engine prints it. The caller (berth.builds.builder) packs the context, decides
what a failure is called and owns the deadline; this module speaks to the engine and reports what happened as
plain data (`BuildRun`), or raises `BuildRefused` / `EngineLost`.

Stopping a build: the engine cancels a build when its client goes away, killing the step that runs. The SDK
has no call for that, so the build keeps the HTTP response of the build and shuts its socket down on timeout
or cancellation (measured: the running step's container is gone within a second or two).
"""

import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker
import docker.errors
import requests
from django.conf import settings
from docker.utils.build import exclude_paths

from berth.core.lines import line_max_bytes
from berth.runtime.client import docker_api_version, docker_client

CANCEL_POLL_SECONDS = 0.5
# how the engine's legacy builder starts a step: "Step <number>/<total> : <instruction>"
STEP_LINE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_SUCCESS = re.compile(r"^Successfully built ([0-9a-f]+)$")
# The engine colours a step's stderr; the log is plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildRefused(Exception):
    """The engine refused the build before any step ran (a Dockerfile it cannot parse); the text is its reason."""


class EngineLost(Exception):
    """The connection to the engine failed during the build; the text is the client's error."""


class ImageImportError(Exception):
    """`docker import` failed; the text is its output."""


@dataclass(frozen=True)
class BuildRun:
    """How an engine build ended. `stopped` is "timeout" or "cancelled" when the caller's deadline or `cancelled`
    ended it (the engine was told to stop); otherwise `error` is the engine's message of a failed build (with
    `step` = (number, total, instruction) of the last step begun, if any), or `image_id` the built image's full id
    (None when the engine ended without naming one)."""

    image_id: str | None = None
    stopped: str | None = None
    step: tuple[str, str, str] | None = None
    error: str | None = None


def context_files(root: Path, patterns: list[str]) -> set[str]:
    """The paths under `root` (relative, POSIX) that a build context holds, with .dockerignore `patterns` read the
    way the engine reads them (the Dockerfile is always kept)."""
    return exclude_paths(str(root), patterns, dockerfile="Dockerfile")


def engine_cpus() -> int:
    """How many CPUs the engine reports (0 when it does not say)."""
    return docker_client().info().get("NCPU") or 0


class _BuildAPIClient(docker.APIClient):
    """The SDK's APIClient, keeping the streamed build response so another call can close its socket."""

    response = None
    aborted = False

    def _stream_helper(self, response, decode=False):
        self.response = response
        if self.aborted:  # stopped while the context was still uploading
            self._shutdown(response)
        return super()._stream_helper(response, decode)

    def abort(self) -> None:
        self.aborted = True
        if self.response is not None:
            self._shutdown(self.response)

    def _shutdown(self, response) -> None:
        try:
            # Only shutdown() wakes a thread blocked reading the socket; close() alone does not.
            sock = self._get_raw_response_socket(response)
            sock = getattr(sock, "_sock", sock)
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError, docker.errors.APIError):
            pass  # the stream is already over
        response.close()


class BuildOutput:
    """Turns the engine's JSON messages into whole lines and remembers the step and the outcome."""

    def __init__(self, on_line: Callable[..., None]):
        # on_line(line) for each line; on_line(piece, more=True) for a piece of a long one
        self.on_line = on_line
        self.partial = ""
        self.step: tuple[str, str, str] | None = None  # number, total, instruction
        self.error: str | None = None
        self.image_id: str | None = None

    def feed(self, message: dict) -> None:
        if "stream" in message:
            self._text(message["stream"])
        elif "status" in message:
            self._text(f"{message['status']} {message.get('progress', '')}".rstrip() + "\n")
        if "aux" in message and isinstance(message["aux"], dict) and message["aux"].get("ID"):
            self.image_id = message["aux"]["ID"]
        if "error" in message or "errorDetail" in message:
            self.flush()
            detail = message.get("errorDetail") or {}
            self.error = (detail.get("message") or message.get("error") or "unknown error").strip()

    def _text(self, text: str) -> None:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self._line(line)
        if len(self.partial) > line_max_bytes():
            # a step printing without newlines (100 MB of it) must not grow this: pass the piece on, marked as
            # going on in the next line (the log stream keeps the mark, berth.core.lines)
            piece, self.partial = self.partial, ""
            self.on_line(_ANSI.sub("", piece), more=True)

    def _line(self, line: str) -> None:
        line = _ANSI.sub("", line).rstrip("\r")
        step = STEP_LINE.match(line)
        if step:
            self.step = step.groups()
        success = _SUCCESS.match(line)
        if success and not self.image_id:
            self.image_id = success.group(1)
        self.on_line(line)

    def flush(self) -> None:
        if self.partial:
            line, self.partial = self.partial, ""
            self._line(line)


def image_build(
    *,
    context: IO[bytes],
    tag: str,
    labels: dict[str, str],
    on_line: Callable[..., None],
    deadline: float,
    cancelled: Callable[[], bool],
    container_limits: dict | None = None,
) -> BuildRun:
    """Build the uncompressed tar `context` (its Dockerfile at the top) into image `tag`, labelled with `labels`
    (those its Dockerfile does not set itself: the installation's too), each output line given
    to `on_line` as it comes, until the engine ends or `deadline` (time.monotonic()) passes or `cancelled()`
    turns true: then the engine is told to stop. `on_line` and `cancelled` are called from the calling thread
    only. Raises BuildRefused or EngineLost when the engine refuses or the connection fails."""
    # The engine's output is read on a thread of its own, so that this thread can notice a timeout or a
    # cancellation while a step prints nothing, and stop the build by shutting the stream's socket.
    api = _BuildAPIClient(base_url=settings.DOCKER_HOST, version=docker_api_version(), timeout=60)
    messages: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            stream = api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                labels=labels,  # the engine adds a LABEL step for each (berth.builds.builder.labels_in_dockerfile)
                decode=True,
                dockerfile="Dockerfile",
                container_limits=container_limits,
                timeout=None,  # a quiet step (a long compile) must not end the stream; the deadline does
            )
            for message in stream:
                messages.put(("message", message))
            messages.put(("end", None))
        except Exception as exc:  # handed to the calling thread, which decides what it means
            messages.put(("exception", exc))

    reader = threading.Thread(target=read, name=f"docker-build {tag}", daemon=True)
    reader.start()
    output = BuildOutput(on_line)
    stopped: str | None = None
    next_cancel_check = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                stopped = "timeout"
                break
            if now >= next_cancel_check:
                next_cancel_check = now + CANCEL_POLL_SECONDS
                if cancelled():
                    stopped = "cancelled"
                    break
            try:
                kind, value = messages.get(timeout=min(CANCEL_POLL_SECONDS, max(deadline - now, 0.01)))
            except queue.Empty:
                continue
            if kind == "message":
                output.feed(value)
            elif kind == "end":
                break
            else:
                output.flush()
                raise _engine_error(value) from value
    finally:
        if stopped is None:
            reader.join(timeout=5)
        if reader.is_alive():
            api.abort()
            if api.response is None:
                # still sending the context: closing it ends the upload, and the engine drops the build
                context.close()
            reader.join(timeout=30)
        api.close()
    output.flush()
    if stopped is not None or output.error or not output.image_id:
        return BuildRun(stopped=stopped, step=output.step, error=output.error)
    # The engine may report the short id only; the image's full id is what a release should pin.
    return BuildRun(image_id=docker_client().images.get(tag).id, step=output.step)


def image_tag(image_id: str, ref: str) -> None:
    """Tag the local image `image_id` as `ref` (repository:tag), moving the tag from any image that had it.

    That image is removed when nothing else names or uses it (no other tag, no container, no image built on it):
    a cache tag moved at each build would otherwise leave the last stage behind, untagged, for good."""
    api = docker_client().api
    try:
        previous = api.inspect_image(ref)["Id"]
    except docker.errors.NotFound:
        previous = None
    repository, _, tag = ref.rpartition(":")
    api.tag(image_id, repository, tag, force=True)
    _replaced_remove(api, previous, ref)


def _replaced_remove(api: docker.APIClient, previous: str | None, ref: str) -> None:
    """Remove the image `ref` named before (`previous`, its id) now that `ref` names another, unless something
    still names or uses it."""
    if previous and previous != api.inspect_image(ref)["Id"]:
        try:
            api.remove_image(previous)  # never forced: the engine keeps an image still named or used
        except docker.errors.APIError:
            pass  # 409: still named, used or a parent (a cache chained on it); 404: gone meanwhile


def image_untag(ref: str) -> bool:
    """Remove the tag `ref`, and the image with it when nothing else names or uses it; False when there was none."""
    try:
        docker_client().api.remove_image(ref)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        # a container uses the image: drop the name only, the image goes with its last user
        docker_client().api.remove_image(ref, noprune=True, force=True)
    return True


def _engine_error(exc: Exception) -> Exception:
    if isinstance(exc, docker.errors.APIError):
        # the engine answers 4xx before any step for a Dockerfile it cannot parse
        return BuildRefused(str(exc.explanation or exc))
    return EngineLost(str(exc))


class ImageImport:
    """A running `docker import` of the root filesystem tar read from `source` (a pipe another process writes),
    tagged `tag`, each of `changes` a Dockerfile instruction (LABEL, ENV, ENTRYPOINT) applied to the image.

    The caller closes its own copy of `source` once this has started, so the writer sees the reader go. The import
    goes to the engine settings.DOCKER_HOST names, the one every other call here (and the caller's "is it current?"
    inspect) speaks to: the CLI's own default would be this machine's engine whatever the setting says. The image
    `tag` named before goes once the import has succeeded, unless something still names or uses it: a stack or
    add-on image rebuilt for a new recipe left the old one behind, unnamed, for good (~130-690 MB each)."""

    def __init__(self, *, source: IO[bytes], tag: str, changes: Iterable[str]):
        self._tag = tag
        try:
            self._previous = docker_client().api.inspect_image(tag)["Id"]
        except (docker.errors.DockerException, requests.RequestException):
            self._previous = None  # none, or no engine: the import says so
        self._process = subprocess.Popen(
            ["docker", "import", *sum((["--change", c] for c in changes), []), "-", tag],
            stdin=source,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_HOST": settings.DOCKER_HOST},
        )

    def kill(self) -> None:
        """Stop the import (the writer failed): nothing is tagged."""
        self._process.kill()
        self._process.wait()

    def finish(self) -> None:
        """Wait for the import to end; ImageImportError with its output when it failed."""
        output = self._process.communicate()[0].decode(errors="replace").strip()
        if self._process.returncode != 0:
            raise ImageImportError(output)
        _replaced_remove(docker_client().api, self._previous, self._tag)

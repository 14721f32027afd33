"""Images a build needs from the engine: pulls with their progress, and what the engine knows of an image.

The layers above pass references and callbacks and get plain data back: an image as the engine inspects it (a
dict, as `docker image inspect` prints it), progress as text, failures as `PullError` with the reason to show.
"""

from collections.abc import Callable

import docker.errors
import requests.exceptions

from berth.runtime.client import docker_client

# A pull moves layers for minutes; an inspection waits behind the engine's other work.
PULL_TIMEOUT = 300
# What the engine raises when it does not answer or fails while Berth asks about an image (the SDK raises
# requests' errors for a socket that does not answer or times out, OSError for one that is not there).
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


class PullError(ValueError):
    """A pull failed; the message ("cannot pull <ref>: <reason>") is the engine's or the registry's reason."""


class PullCancelled(Exception):
    """The pull was stopped because `cancelled()` turned true."""


def repository_and_tag(ref: str) -> tuple[str, str]:
    """(repository, tag) of a reference as the engine's pull takes them: "latest" when no tag is written; a
    reference by digest is the repository, with no tag."""
    repository, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "")
    if not repository or "/" in tag:
        repository, tag = ref, "latest"
    return repository, tag


def image_pull(
    ref: str, *, on_progress: Callable[[str], None], cancelled: Callable[[], bool] | None = None
) -> None:
    """Pull `ref` with the engine, giving `on_progress` each layer's steps once ("<layer>: <status>", the byte
    counts of downloads and extractions left out). Raises PullError with the reason, PullCancelled when
    `cancelled()` turns true (checked after each message of the engine)."""
    repository, tag = repository_and_tag(ref)
    seen = set()
    client = docker_client(timeout=PULL_TIMEOUT)
    try:
        for event in client.api.pull(repository, tag=tag or None, stream=True, decode=True):
            if "error" in event:
                raise PullError(f"cannot pull {ref}: {event['error']}")
            status = event.get("status", "")
            key = (event.get("id"), status)
            if status and key not in seen and "Downloading" not in status and "Extracting" not in status:
                seen.add(key)
                on_progress(f"{event.get('id', '')}{': ' if event.get('id') else ''}{status}")
            if cancelled is not None and cancelled():
                raise PullCancelled()
    except docker.errors.APIError as exc:
        raise PullError(f"cannot pull {ref}: {exc.explanation or exc}") from exc
    finally:
        client.close()


def image_inspect(ref: str) -> dict | None:
    """The image `ref` reaches on this engine (a name, a digest reference or an id, as the engine resolves it),
    as the engine inspects it; None when there is none."""
    client = docker_client(timeout=PULL_TIMEOUT)
    try:
        return client.api.inspect_image(ref)
    except docker.errors.NotFound:
        return None
    finally:
        client.close()

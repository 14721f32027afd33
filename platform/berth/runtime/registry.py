"""Berth's private image registry (Debian's docker-registry, with htpasswd auth) and how images reach nodes.

Every node of a swarm must run the same bytes: a build is pushed to the registry once and services name the
image by digest (`registry/app@sha256:…`); each node pulls it from there (credentials travel with the service
spec, from the manager's client login). Old releases' images are deleted from the registry by digest and its
blobs reclaimed by `docker-registry garbage-collect` (which releases go is decided by berth.nodes.images).

`BERTH_REGISTRY` (host:port the nodes pull from) turns it on; empty keeps images on this node only.
`manage.py registry_run` writes the config under BERTH_REGISTRY_DIR and runs the registry (a Procfile process).

An infrastructure seam beside the container engine: the layers above call these functions with names and
references and get strings back; the Docker client stays down here.
"""

import re
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import httpx
import redis
from django.conf import settings

from berth.core.redis import redis_client
from berth.runtime.client import docker_client

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # used with fullmatch (`$` accepts a trailing newline)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
# a push and the registry's garbage-collect must not overlap: the collector would delete the blobs of a push
# whose manifest is not written yet (docker-registry's own documentation says to collect with no writers)
REGISTRY_LOCK = "berth:lock:registry"
STACK_REPOSITORY = "berth/stack"


class RegistryError(Exception):
    """A push, login or prune failed; the message says which and why."""


def htpasswd_line(*, user: str, password: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", user) or ":" in password or not password:
        raise ValueError(
            "a registry user is 1-64 letters, digits, '.', '_' or '-', with a non-empty password"
        )
    with warnings.catch_warnings():
        # imported here, when an htpasswd is written, so its DeprecationWarning (deprecated in 3.11, gone in 3.13)
        # is silenced once and nowhere else; docker-registry accepts only bcrypt htpasswd lines
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    # The registry checks the password on every request of a push (a HEAD and an upload per layer): at bcrypt's
    # usual cost 12 that was most of a warm push here (2.8-4.4 s). Cost 4 is enough for a generated 24-character
    # password, which no dictionary holds; the file itself is readable by root only.
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"


def registry_config_write(*, directory: Path, listen: str, users: dict[str, str]) -> Path:
    """Write config.yml (filesystem storage under `directory`/data, deletes allowed for GC) and its htpasswd."""
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = directory / "htpasswd"
    htpasswd.write_text("".join(htpasswd_line(user=u, password=p) + "\n" for u, p in sorted(users.items())))
    config = directory / "config.yml"
    config.write_text(
        "\n".join(
            [
                "version: 0.1",
                "storage:",
                "  filesystem:",
                f"    rootdirectory: {directory / 'data'}",
                "  delete:",
                "    enabled: true",
                "http:",
                f"  addr: {listen}",
                "auth:",
                "  htpasswd:",
                "    realm: berth",
                f"    path: {htpasswd}",
                "",
            ]
        )
    )
    return config


def registry_command(config: Path) -> list[str]:
    return ["docker-registry", "serve", str(config)]


def registry_gc_command(config: Path) -> list[str]:
    # blobs no manifest references any more (after manifest_delete) are removed from disk
    return ["docker-registry", "garbage-collect", "--delete-untagged", str(config)]


def image_push(*, client: docker.DockerClient, image: str, repository: str, tag: str) -> str:
    """Tag `image` as repository:tag, push it (the client must be logged in to the registry) and return the
    digest reference `repository@sha256:…` that services name, so every node runs exactly these bytes."""
    try:
        client.images.get(image).tag(repository, tag)
        digest = None
        for event in client.api.push(repository, tag=tag, stream=True, decode=True):
            if event.get("error"):
                raise RegistryError(f"push of {repository}:{tag} failed: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest") or digest
    except docker.errors.APIError as exc:
        raise RegistryError(f"push of {repository}:{tag} failed: {exc.explanation or exc}") from exc
    if not digest or not DIGEST.fullmatch(digest):
        raise RegistryError(f"push of {repository}:{tag} reported no digest")
    return f"{repository}@{digest}"


def manifest_delete(*, registry: str, repository: str, digest: str, user: str, password: str) -> bool:
    """Delete one image (by digest) from the registry; its blobs go at the next garbage-collect. False if gone."""
    if not DIGEST.fullmatch(digest):
        raise ValueError(f"not a digest: {digest!r}")
    url = f"http://{registry}/v2/{repository}/manifests/{digest}"
    response = httpx.delete(url, auth=(user, password), headers={"Accept": MANIFEST_TYPES}, timeout=30)
    if response.status_code == 404:
        return False
    if response.status_code != 202:
        raise RegistryError(
            f"deleting {repository}@{digest}: HTTP {response.status_code} {response.text[:200]}"
        )
    return True


def repository_digests(*, registry: str, repository: str, user: str, password: str) -> list[str]:
    """The digests of every tag of `repository` in the registry ([] when it has none or is unknown)."""
    base = f"http://{registry}/v2/{repository}"
    tags = httpx.get(f"{base}/tags/list", auth=(user, password), timeout=30)
    if tags.status_code == 404:
        return []
    if tags.status_code != 200:
        raise RegistryError(f"listing {repository}: HTTP {tags.status_code} {tags.text[:200]}")
    digests = []
    for tag in tags.json().get("tags") or []:
        head = httpx.head(
            f"{base}/manifests/{tag}", auth=(user, password), headers={"Accept": MANIFEST_TYPES}
        )
        digest = head.headers.get("Docker-Content-Digest", "")
        if head.status_code == 200 and DIGEST.fullmatch(digest):
            digests.append(digest)
    return list(dict.fromkeys(digests))


def digests_to_prune(*, references: list[str], keep: int) -> list[str]:
    """Of an app's releases' image references (oldest first), the digests beyond the last `keep` to delete."""
    digests = [ref.partition("@")[2] for ref in references if "@" in ref]
    kept = set(digests[-keep:]) if keep > 0 else set()
    return [d for d in dict.fromkeys(digests) if d not in kept]


# -- wired into Berth: the settings say where the registry is ------------------------------------------------


def registry_enabled() -> bool:
    return bool(settings.BERTH_REGISTRY)


def registry_dir() -> Path:
    return Path(settings.BERTH_REGISTRY_DIR)


def registry_config_path() -> Path:
    return registry_dir() / "config.yml"


def app_repository(app_name: str) -> str:
    """Where an app's images live in Berth's registry: `<BERTH_REGISTRY>/<app>`."""
    return f"{settings.BERTH_REGISTRY}/{app_name}"


def registry_ping(timeout: float = 3.0) -> str | None:
    """None when Berth's registry answers its API (`GET /v2/`) to Berth's credentials; else why not, in a few
    words (`manage.py doctor` says it)."""
    try:
        answer = httpx.get(
            f"http://{settings.BERTH_REGISTRY}/v2/",
            auth=(settings.BERTH_REGISTRY_USER, settings.BERTH_REGISTRY_PASSWORD),
            timeout=timeout,
            trust_env=False,  # the registry is Berth's own: never through a proxy
        )
    except httpx.HTTPError as exc:
        return f"does not answer ({type(exc).__name__}: {exc})"
    if answer.status_code == 401:
        return "refuses Berth's credentials (BERTH_REGISTRY_USER, BERTH_REGISTRY_PASSWORD)"
    if answer.status_code != 200:
        return f"answers HTTP {answer.status_code} to GET /v2/"
    return None


def registry_login(client: docker.DockerClient) -> None:
    """Log `client` in to Berth's registry: its pushes, and the services it creates (X-Registry-Auth, so worker
    nodes can pull), carry the credentials. Cached by the SDK per client."""
    try:
        client.login(
            username=settings.BERTH_REGISTRY_USER,
            password=settings.BERTH_REGISTRY_PASSWORD,
            registry=settings.BERTH_REGISTRY,
        )
    except docker.errors.APIError as exc:
        reason = _reason(exc)
        hint = (
            "is the `registry` process running?"
            if reason == "connection refused"
            else "are BERTH_REGISTRY_USER and BERTH_REGISTRY_PASSWORD right?"
        )
        raise RegistryError(
            f"cannot log in to the registry {settings.BERTH_REGISTRY}: {reason} ({hint})"
        ) from exc


def _reason(exc: docker.errors.APIError) -> str:
    text = str(exc.explanation or exc)
    if "connection refused" in text:
        return "connection refused"
    return text[:300]


def registry_push(*, image: str, repository: str, tag: str, client: docker.DockerClient | None = None) -> str:
    """Push a local image to Berth's registry as repository:tag (log in first, hold the registry lock so no
    garbage-collect runs meanwhile) and return its digest reference. RegistryError with one clear line."""
    client = client or docker_client(timeout=300)
    registry_login(client)
    lock = redis_client().lock(REGISTRY_LOCK, timeout=600, blocking_timeout=600)
    if not lock.acquire():
        raise RegistryError("the registry stayed busy (garbage-collect) for 10 minutes")
    try:
        return image_push(client=client, image=image, repository=repository, tag=tag)
    finally:
        _release(lock)


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        pass  # expired meanwhile


def app_image_push(
    *, image: str, app_name: str, tag: str, log: Callable[[str], object] = lambda line: None
) -> str:
    """Push a build's (or a pulled) image as `<registry>/<app>:<tag>`; returns `<registry>/<app>@sha256:…`.
    The build log gets one short line with the time it took."""
    started = time.monotonic()
    log(f"-----> Pushing to the registry {settings.BERTH_REGISTRY}…")
    reference = registry_push(image=image, repository=app_repository(app_name), tag=tag)
    log(f"       done in {time.monotonic() - started:.1f}s: {reference.partition('@')[2][:19]}")
    return reference


def stack_image_in_registry(*, image: str, client: docker.DockerClient | None = None) -> str:
    """The stack image `image` (berth.builds.stack's reference, passed in by the caller) by digest in Berth's
    registry, pushed if missing there: what every node can run (the image GC job on the nodes uses it)."""
    return registry_push(
        image=image, repository=f"{settings.BERTH_REGISTRY}/{STACK_REPOSITORY}", tag="current", client=client
    )


def registry_garbage_collect() -> str:
    """Reclaim the blobs no manifest references any more (after manifest_delete). Holds the registry lock, so
    no push runs meanwhile. Says how many blobs went."""
    config = registry_config_path()
    if not config.is_file():
        raise RegistryError(f"no registry config at {config}: does the registry run on this machine?")
    lock = redis_client().lock(REGISTRY_LOCK, timeout=600, blocking_timeout=600)
    if not lock.acquire():
        raise RegistryError("a push held the registry for 10 minutes; garbage-collect skipped")
    try:
        done = subprocess.run(registry_gc_command(config), capture_output=True, text=True, timeout=600)
    finally:
        _release(lock)
    if done.returncode != 0:
        raise RegistryError(f"docker-registry garbage-collect failed: {done.stderr.strip()[-300:]}")
    output = done.stdout + done.stderr
    return f"{output.count('Deleting blob')} blobs deleted"

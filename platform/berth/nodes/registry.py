"""Berth's private image registry (Debian's docker-registry, with htpasswd auth) and how images reach nodes.

Every node of a swarm must run the same bytes: a build is pushed to the registry once and services name the
image by digest (`registry/app@sha256:…`); each node pulls it from there (credentials travel with the service
spec, from the manager's client login). Old releases' images are deleted from the registry by digest and its
blobs reclaimed by `docker-registry garbage-collect`.

Only the mechanics live here (config, push by digest, prune, gc command); wiring them into `make up`, the builder
and the scheduler is listed as not done in the clustering note.
"""

import crypt  # deprecated in 3.11, gone in 3.13; docker-registry accepts only bcrypt htpasswd lines
import re
from pathlib import Path

import docker
import docker.errors
import httpx

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


class RegistryError(Exception):
    """A push, login or prune failed; the message says which and why."""


def htpasswd_line(*, user: str, password: str) -> str:
    if not re.match(r"^[A-Za-z0-9._-]{1,64}$", user) or ":" in password or not password:
        raise ValueError(
            "a registry user is 1-64 letters, digits, '.', '_' or '-', with a non-empty password"
        )
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}"


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
    if not digest or not DIGEST.match(digest):
        raise RegistryError(f"push of {repository}:{tag} reported no digest")
    return f"{repository}@{digest}"


def manifest_delete(*, registry: str, repository: str, digest: str, user: str, password: str) -> bool:
    """Delete one image (by digest) from the registry; its blobs go at the next garbage-collect. False if gone."""
    if not DIGEST.match(digest):
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


def digests_to_prune(*, references: list[str], keep: int) -> list[str]:
    """Of an app's releases' image references (oldest first), the digests beyond the last `keep` to delete."""
    digests = [ref.partition("@")[2] for ref in references if "@" in ref]
    kept = set(digests[-keep:]) if keep > 0 else set()
    return [d for d in dict.fromkeys(digests) if d not in kept]

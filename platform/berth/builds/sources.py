"""Deploys from elsewhere: an app follows a git repository hosted anywhere (GitHub, GitLab, Gitea, any https URL).
Its push webhook, signed with a per-app secret, makes Berth fetch the pushed commit into the app's own repository
and build and deploy it like a `git push berth`, the output in the app's builds; the repository then records it.

The URL is checked as webhook targets are (berth.core.outbound: https, public addresses only unless
BERTH_WEBHOOKS_ALLOW_PRIVATE), and git follows no redirect when it fetches. Signatures, by sender: GitHub
`X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>`, Gitea/Gogs `X-Gitea-Signature`/`X-Gogs-Signature: <hex>`, GitLab
`X-Gitlab-Token: <the secret>`.
"""

import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from berth.apps.crypto import decrypt_text, encrypt_text
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.builds import services as builds
from berth.builds.errors import BuildError
from berth.builds.models import ACTIVE_BUILD_STATUSES, Build
from berth.builds.tree import UnsafePath, tree_export
from berth.core.outbound import allow_private, url_refusal

PAYLOAD_MAX_BYTES = 1024 * 1024  # a push event of a few thousand commits; more is refused before it is read
FETCH_TIMEOUT = 600
SHA_LENGTHS = (40, 64)


class SourceError(Exception):
    """The source could not be fetched or built (one line, for the build's log and the task's result)."""


def source_set(*, app: App, url: str, actor, remote_addr: str | None = None) -> str:
    """Follow the repository at `url`; returns the webhook secret, shown once (a new one each time)."""
    if not isinstance(url, str) or len(url) > 500:
        raise ValidationError({"url": "must be a git repository URL of at most 500 characters"})
    if not url.startswith("https://") and not (allow_private() and url.startswith("http://")):
        raise ValidationError({"url": "must be an https:// URL of a git repository"})
    refusal = url_refusal(url)
    if refusal:
        raise ValidationError({"url": refusal})
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        App.objects.filter(pk=app.pk).update(source_url=url, source_secret_encrypted=encrypt_text(secret))
        app.source_url = url
        audit_record(
            action="app.source.set", actor=actor, team=app.team, target=app.name, remote_addr=remote_addr,
            data={"url": url},
        )  # fmt: skip
    return secret


def source_remove(*, app: App, actor, remote_addr: str | None = None) -> None:
    with transaction.atomic():
        App.objects.filter(pk=app.pk).update(source_url="", source_secret_encrypted="")
        app.source_url = ""
        audit_record(
            action="app.source.remove", actor=actor, team=app.team, target=app.name, remote_addr=remote_addr
        )


def signature_valid(*, app: App, headers: dict[str, str], body: bytes) -> bool:
    """Whether the webhook request is signed with the app's secret, in any sender's format it carries."""
    if not app.source_secret_encrypted:
        return False
    secret = decrypt_text(app.source_secret_encrypted)
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    github = headers.get("x-hub-signature-256", "")
    if github:
        return hmac.compare_digest(github, f"sha256={digest}")
    for header in ("x-gitea-signature", "x-gogs-signature"):
        if headers.get(header):
            return hmac.compare_digest(headers[header], digest)
    gitlab = headers.get("x-gitlab-token", "")
    return bool(gitlab) and hmac.compare_digest(gitlab, secret)


@dataclass(frozen=True)
class PushEvent:
    ref: str
    sha: str


def push_event(body: bytes) -> PushEvent | None:
    """The branch and commit of a push event (GitHub, Gitea, GitLab shapes); None for anything else (a ping, a
    tag, a deleted branch)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    ref = payload.get("ref")
    sha = payload.get("checkout_sha") or payload.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/") or not isinstance(sha, str):
        return None
    if len(sha) not in SHA_LENGTHS or not all(c in "0123456789abcdef" for c in sha) or not sha.strip("0"):
        return None
    return PushEvent(ref=ref, sha=sha)


def source_deploy(*, app: App, sha: str, repo: Path) -> Build | None:
    """Fetch `sha` of the app's deploy branch from its source into its repository `repo` (the git server makes it,
    berth.gitserver.services.repo_ensure), then queue its build (None when a build of that commit is running or
    done: a redelivered webhook deploys once). SourceError says why not."""
    if Build.objects.filter(app=app, git_sha=sha).exclude(status__in=["failed", "cancelled"]).exists():
        return None
    if not app.source_url:
        raise SourceError(f"{app.name} follows no repository")
    branch = f"refs/heads/{app.deploy_branch}"
    fetched = subprocess.run(
        ["git", "-c", "http.followRedirects=false", "-c", "protocol.file.allow=never", "--git-dir", str(repo),
         "fetch", "--quiet", "--no-tags", "--", app.source_url, f"+{branch}:refs/berth/source"],
        capture_output=True, text=True, timeout=FETCH_TIMEOUT,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if fetched.returncode != 0:
        raise SourceError(
            f"git fetch {app.source_url} failed: {fetched.stderr.strip()[-300:] or 'no reason given'}"
        )
    source = builds.builds_dir() / f"source-{uuid.uuid4().hex}"
    source.mkdir()
    try:
        tree_export(repo=repo, sha=sha, into=source)
    except (UnsafePath, BuildError) as exc:
        shutil.rmtree(source, ignore_errors=True)
        raise SourceError(f"commit {sha[:12]} of {app.source_url}: {exc}") from exc
    try:
        build = builds.build_create(
            app=app, source=Build.Source.GIT, actor=None, git_ref=branch, git_sha=sha, source_path=str(source)
        )
    except builds.BuildConflict as exc:
        shutil.rmtree(source, ignore_errors=True)
        raise SourceError(str(exc)) from exc
    builds.build_enqueue(build)
    return build


def source_build_active(app: App) -> bool:
    """A build of the app still runs: a webhook's deploy waits for it (the task retries) rather than fail."""
    return Build.objects.filter(app=app, status__in=ACTIVE_BUILD_STATUSES).exists()

"""Git over smart HTTP: authorize with the GitAccess seam, then hand the request to `git http-backend`."""

import base64
import binascii
import os
import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from berth.builds.repos import is_valid_branch, repos_root
from berth.gitserver import conf
from berth.gitserver.backend import (
    HEAD_BYTES,
    CgiError,
    PushTooLarge,
    cgi_start,
    iterate_on_bridge,
    on_bridge,
)
from berth.gitserver.pktline import read_commands, refusal
from berth.gitserver.relay import HOOK_FD_VARIABLE, hook_channel_open
from berth.gitserver.seams import GitDenied, GitTarget, get_git_access
from berth.gitserver.services import repo_ensure

REALM = 'Basic realm="Berth"'
UPLOAD, RECEIVE, INFO_REFS = "git-upload-pack", "git-receive-pack", "info/refs"
PROTOCOL_RE = re.compile(r"[A-Za-z0-9=:._-]{1,200}")
PKT_LENGTH_RE = re.compile(rb"[0-9a-f]{4}")
# Variables of the web process a CGI child must not inherit (they would redirect git or spoof CGI).
CGI_NAMES = {
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_USER",
    "REQUEST_METHOD",
}


def _text(status: int, message: str) -> HttpResponse:
    response = HttpResponse(
        message.rstrip("\n") + "\n", status=status, content_type="text/plain; charset=utf-8"
    )
    if status == 401:
        response["WWW-Authenticate"] = REALM
    return response


def _basic_token(request: HttpRequest) -> str | None:
    """The password of HTTP Basic auth (any username): Berth API tokens go there."""
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, token = decoded.partition(":")
    return token if sep and token else None


def _backend_env(request: HttpRequest, target: GitTarget, service: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "HTTP_")) and key not in CGI_NAMES
    }
    meta = request.META
    user = re.sub(r"[^\w.@+-]", "_", target.user_label)[:100] or "berth"
    env.update(
        GIT_PROJECT_ROOT=str(repos_root()),
        GIT_HTTP_EXPORT_ALL="1",
        GATEWAY_INTERFACE="CGI/1.1",
        PATH_INFO=f"/{target.app_name}.git/{service}",
        REQUEST_METHOD=request.method or "GET",
        QUERY_STRING=meta.get("QUERY_STRING", ""),
        CONTENT_TYPE=meta.get("CONTENT_TYPE", ""),
        REMOTE_USER=user,
        REMOTE_ADDR=meta.get("REMOTE_ADDR") or "127.0.0.1",
        # What a pre-receive hook run as `manage.py git_hook` needs (the relay hook needs only its socket).
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE,
        BERTH_HOME=str(settings.BERTH_HOME),
        BERTH_GIT_DEPLOY_BRANCH=target.deploy_branch,
        BERTH_GIT_USER=user,
        PYTHONUNBUFFERED="1",
    )
    length = meta.get("CONTENT_LENGTH", "")
    if length.isdigit():
        env["CONTENT_LENGTH"] = length
    encoding = meta.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        env["HTTP_CONTENT_ENCODING"] = encoding
    protocol = meta.get("HTTP_GIT_PROTOCOL", "")
    if PROTOCOL_RE.fullmatch(protocol):
        env["GIT_PROTOCOL"] = protocol
    return env


@csrf_exempt
async def git_http(request: HttpRequest, app: str, service: str) -> HttpResponse:
    """Smart HTTP for /git/<app>.git/{info/refs,git-upload-pack,git-receive-pack}; the URL already validated app."""
    wanted_method = "GET" if service == INFO_REFS else "POST"
    if request.method != wanted_method:
        return HttpResponseNotAllowed([wanted_method])
    write = service == RECEIVE or (service == INFO_REFS and request.GET.get("service") == RECEIVE)
    token = _basic_token(request)
    if token is None:
        return _text(401, "Berth needs an API token as the password (any user name)")
    try:
        target = await sync_to_async(get_git_access().authorize)(app_name=app, token=token, write=write)
    except GitDenied as denied:
        return _text(denied.status, denied.message)
    if target.app_name != app or not is_valid_branch(target.deploy_branch):
        return _text(500, "git access returned an inconsistent target")

    length = request.META.get("CONTENT_LENGTH", "")
    if service == RECEIVE and length.isdigit() and int(length) > conf.MAX_PUSH_BYTES:
        head = await sync_to_async(request.read, thread_sensitive=False)(HEAD_BYTES)
        return _too_large(request, head, f"{int(length) / 2**20:.1f} MiB")
    wsgi = not isinstance(request, ASGIRequest)
    if wsgi and service != INFO_REFS and not length.isdigit():
        # WSGI servers hand Django no chunked bodies; git sends pushes over http.postBuffer chunked.
        return _text(411, "chunked git requests need Berth's ASGI server (gunicorn with the uvicorn worker)")

    first_bytes = b""
    if service == RECEIVE and "gzip" not in request.META.get("HTTP_CONTENT_ENCODING", ""):
        first_bytes = await sync_to_async(request.read, thread_sensitive=False)(4)
        if not PKT_LENGTH_RE.fullmatch(first_bytes):
            return _text(400, "this is not a git receive-pack request")

    repo = await sync_to_async(repo_ensure, thread_sensitive=False)(
        app_name=app, deploy_branch=target.deploy_branch
    )
    env = _backend_env(request, target, service)
    hook_fd = None
    if service == RECEIVE:
        # the push is decided in this process, in a thread that answers the hook over this socket
        hook_fd = hook_channel_open(
            app_name=app, deploy_branch=target.deploy_branch, repo=repo, pusher=env["REMOTE_USER"]
        )
        env[HOOK_FD_VARIABLE] = str(hook_fd)
    start = cgi_start(
        env=env,
        read_body=request.read,
        first_bytes=first_bytes,
        body_limit=conf.MAX_PUSH_BYTES if service == RECEIVE else None,
        # receive-pack answers only after the whole pack, so counting it first costs no liveness.
        body_before_headers=service == RECEIVE,
        pass_fds=() if hook_fd is None else (hook_fd,),
    )
    try:
        cgi = await (on_bridge(start) if wsgi else start)
    except PushTooLarge as too_large:
        return _too_large(request, too_large.head, "it")
    except CgiError as exc:
        return _text(502, f"git http-backend failed: {exc}")
    finally:
        if hook_fd is not None:
            os.close(hook_fd)  # git has its copy; the relay's thread sees the end once git's processes end

    response = StreamingHttpResponse(iterate_on_bridge(cgi) if wsgi else cgi.body, status=cgi.status)
    for name, value in cgi.headers:
        response[name] = value
    # Hook output must reach the pusher live, also through a buffering proxy in front.
    response["X-Accel-Buffering"] = "no"
    return response


def _too_large(request: HttpRequest, head: bytes, size: str) -> HttpResponse:
    """413 with the reason; to a git client, the same reason in git's own protocol so the pusher reads it.

    git shows an HTTP error on a push only as "RPC failed; HTTP 413", so when the request carries the
    commands and asks for a report, the refusal is a receive-pack result instead (every ref rejected).
    """
    limit = conf.MAX_PUSH_BYTES
    message = (
        f"push too large: {size} is over this Berth's limit of {limit / 2**20:.1f} MiB "
        f"({limit} bytes, BERTH_GIT_MAX_PUSH_BYTES); nothing was changed"
    )
    commands = read_commands(head)
    if request.headers.get("User-Agent", "").startswith("git/") and commands:
        refs, capabilities = commands
        body = refusal(refs=refs, capabilities=capabilities, message=message, reason="push too large")
        if body is not None:
            response = HttpResponse(body, content_type="application/x-git-receive-pack-result")
            response["Cache-Control"] = "no-cache, max-age=0, must-revalidate"
            return response
    return _text(413, message)

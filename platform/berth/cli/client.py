"""The CLI's side of the wire: where the credentials live, and one small client for the REST API v1.

Nothing here imports Django: the CLI runs on laptops and in CI scripts, far from the server's settings.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

LOGIN_HINT = "run `berth login --url URL`"
CA_BUNDLE_HINT = "if a private CA signed it, pass --ca-bundle FILE to `berth login` or set BERTH_CA_BUNDLE"


class CliError(Exception):
    """A failure the user can act on: printed as one `error: ...` line, exit code 1."""

    exit_code = 1


class UsageError(CliError):
    """The command line itself is wrong (exit code 2, like argparse)."""

    exit_code = 2


class ApiError(CliError):
    """The server answered with an error; the message is its `detail`."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Credentials:
    url: str
    token: str
    token_id: int | None = None  # lets `logout` revoke the token it created
    # a PEM file of the CAs that sign the server's certificate (a private CA); None: the usual public CAs
    ca_bundle: str | None = None


def credentials_path() -> Path:
    return Path.home() / ".config" / "berth" / "credentials.json"


def load_credentials() -> Credentials | None:
    """The stored login, or None. A damaged file is an error, not a silent logout."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
        return Credentials(
            url=data["url"],
            token=data["token"],
            token_id=data.get("token_id"),
            ca_bundle=data.get("ca_bundle"),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot read {path} ({exc}); delete it and {LOGIN_HINT}") from None


def save_credentials(credentials: Credentials) -> Path:
    """Write the token so that only this user can read it: folder 0700, file 0600, replaced atomically."""
    path = credentials_path()
    temporary = path.with_suffix(".tmp")
    data = {"url": credentials.url, "token": credentials.token, "token_id": credentials.token_id}
    if credentials.ca_bundle:  # only when one was given: the file of a public-CA login stays as it was
        data["ca_bundle"] = credentials.ca_bundle
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        # created 0600 from the start: the token is never readable by others, not even for a moment
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file)
        temporary.chmod(0o600)
        os.replace(temporary, path)
    except OSError as exc:
        raise CliError(f"cannot save the credentials in {path}: {exc}") from None
    return path


def delete_credentials() -> bool:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def current_credentials() -> Credentials:
    """BERTH_URL / BERTH_TOKEN / BERTH_CA_BUNDLE (for CI scripts) override the stored login, each on its own."""
    stored = load_credentials()
    url = os.environ.get("BERTH_URL") or (stored.url if stored else None)
    token = os.environ.get("BERTH_TOKEN") or (stored.token if stored else None)
    if not url or not token:
        raise CliError(f"not logged in; {LOGIN_HINT}")
    url = normalize_url(url)
    return Credentials(
        url=url,
        token=token,
        token_id=stored.token_id if stored else None,
        ca_bundle=ca_bundle_for(url, stored),
    )


def ca_bundle_for(url: str, stored: Credentials | None) -> str | None:
    """BERTH_CA_BUNDLE, else the bundle stored with the login to this same server (a CA trusted for one server is
    not trusted for another that BERTH_URL names)."""
    from_env = os.environ.get("BERTH_CA_BUNDLE")
    if from_env:
        return from_env
    return stored.ca_bundle if stored and stored.url == url else None


def tls_verification(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """How the server's certificate is checked: against the CAs of `ca_bundle` only (as git's http.sslCAInfo and
    curl's --cacert do), else against the usual public CAs. A bundle that cannot be read is an error, never a
    silent fall-back to not checking."""
    if not ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CliError(
            f"cannot use the CA bundle {ca_bundle}: {reason} (a PEM file of CA certificates)"
        ) from None


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise UsageError(f"the server URL must look like https://berth.example.com, got {url!r}")
    return url


def segment(value: str | int) -> str:
    """One URL path segment: a name can never reach another endpoint through `/` or `..`."""
    return quote(str(value), safe="")


class Client:
    """JSON over HTTP to one Berth server; every failure becomes a CliError with a readable message."""

    def __init__(
        self, url: str, token: str | None = None, *, ca_bundle: str | None = None, timeout: float = 30.0
    ):
        self.url = normalize_url(url)
        headers = {"Accept": "application/json", "User-Agent": "berth-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify = tls_verification(ca_bundle)
        if verify is True and self.url.startswith("http://"):
            # plain HTTP never uses TLS (redirects are not followed), yet httpx would load the public CAs for it:
            # ~25 ms of CPU, a sixth of a command's. A context that trusts no CA: were it ever used, it refuses
            verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, method, path) from None
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            if data is None:
                raise CliError(
                    f"unexpected answer from {self.url}{path} (HTTP {response.status_code}, not JSON); "
                    "is this a Berth server?"
                )
            return data
        raise self.api_error(response, data, method, path)

    def lines(self, path: str) -> Iterator[str]:
        """GET a text/plain stream and yield its lines as they arrive (build and run output).

        No read timeout: a build can be silent for minutes (an image pull, a compile) and the server ends the
        stream itself once the build or run is over, or after its own idle limit.
        """
        timeout = httpx.Timeout(self.http.timeout.connect, read=None)
        try:
            with self.http.stream("GET", path, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    try:
                        data = response.json()
                    except ValueError:
                        data = None
                    raise self.api_error(response, data, "GET", path)
                yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, "GET", path) from None

    def transport_error(self, exc: httpx.HTTPError, method: str, path: str) -> CliError:
        if isinstance(exc, httpx.ConnectError) and certificate_rejected(exc):
            return CliError(f"cannot verify the TLS certificate of {self.url} ({exc}); {CA_BUNDLE_HINT}")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return CliError(f"cannot reach Berth at {self.url}: {exc or type(exc).__name__}")
        if isinstance(exc, httpx.TimeoutException):
            timeout = self.http.timeout.read
            return CliError(f"Berth at {self.url} did not answer {method} {path} within {timeout:g} s")
        return CliError(f"talking to Berth at {self.url} failed: {exc or type(exc).__name__}")

    def api_error(self, response: httpx.Response, data: Any, method: str, path: str) -> ApiError:
        detail = data.get("detail") if isinstance(data, dict) else None
        if response.status_code == 401:
            reason = f": {detail}" if detail else " (revoked or expired)"
            return ApiError(
                f"the server rejected your token{reason}; log in again with `berth login --url {self.url}`",
                status=401,
            )
        if detail:
            return ApiError(str(detail), status=response.status_code)
        if response.status_code >= 500:
            message = f"the server failed (HTTP {response.status_code}) on {method} {path}; try again shortly"
        else:
            message = (
                f"HTTP {response.status_code} on {method} {path} from {self.url}; is this a Berth server?"
            )
        return ApiError(message, status=response.status_code)


def certificate_rejected(exc: BaseException) -> bool:
    """The TLS handshake failed because the server's certificate did not verify (httpx keeps ssl's error as the
    cause; its own message is ssl's text)."""
    cause = exc.__cause__ or exc.__context__
    return (
        isinstance(exc, ssl.SSLCertVerificationError)
        or isinstance(cause, ssl.SSLCertVerificationError)
        or "CERTIFICATE_VERIFY_FAILED" in str(exc)
    )


def git(*args: str) -> subprocess.CompletedProcess | None:
    """Run git in the current folder; None when git itself is missing."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return None


def app_from_git_remote() -> str | None:
    """The app named by the `berth` remote of the repository here (`<server>/git/<app>.git`), like Heroku."""
    result = git("remote", "get-url", "berth")
    if result is None or result.returncode != 0:
        return None
    match = re.search(r"/git/([^/\s]+?)(?:\.git)?/?\Z", result.stdout.strip())
    return match.group(1) if match else None

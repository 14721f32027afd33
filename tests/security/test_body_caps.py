"""Bodies are capped before they are stored: every HTTP door of the real web process (gunicorn + uvicorn) refuses
an oversized body by its Content-Length at once, and stops reading a chunked one at the cap, without spooling it.

Each attack streams 64 MiB in 64 KiB pieces over a raw socket and records how much the server took before it
answered; meanwhile a sampler watches the web workers' files in their own TMPDIR (where Django spools bodies)."""

import base64
import os
import re
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync
from berth.accounts.services import token_create
from berth.config.asgi import application
from berth.core import limits
from berth.core.bodylimit import LINGER_BYTES
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.observe.communicator import WebsocketCommunicator

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

MiB = 2**20
STREAM_BYTES = 64 * MiB
PIECE = 64 * 1024
MAX_REQUEST_BYTES = 1 * MiB  # the default of BERTH_MAX_REQUEST_BYTES
MAX_PUSH_BYTES = 8 * MiB  # this module's BERTH_GIT_MAX_PUSH_BYTES (512 MiB by default)
# Loopback socket buffers hold a few MiB the server never read: "stopped early" means well under the 64 MiB.
EARLY = 24 * MiB
# A chunk past the cap may be in memory when the door closes; nothing of the kind goes to disk.
SPOOL_SLACK = 256 * 1024


@pytest.fixture(autouse=True)
def _fast_passwords():
    """The suite's MD5 hasher is unknown to the web process, where the dashboard login checks the password."""


@pytest.fixture
def spool(tmp_path) -> Path:
    path = tmp_path / "web-tmp"
    path.mkdir()
    return path


@pytest.fixture
def platform_processes() -> tuple[str, ...]:
    """Every door here is the web process's: no worker or watcher (no push gets past a cap to a build)."""
    return ("web",)


@pytest.fixture
def platform_env(spool):
    """The web process spools into a folder of this test, so what it stores can be measured."""
    return {"TMPDIR": str(spool), "BERTH_GIT_MAX_PUSH_BYTES": str(MAX_PUSH_BYTES)}


class SpoolWatch:
    """Samples, every 20 ms, the bytes the web workers hold in files under their TMPDIR.

    Python's temporary files are unlinked (O_TMPFILE) at once, so the folder alone shows nothing: the
    workers' open descriptors are what is looked at, and the folder's files as well."""

    def __init__(self, master_pid: int, folder: Path):
        self.master_pid, self.folder, self.peak = master_pid, str(folder), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> list[str]:
        try:
            return Path(f"/proc/{self.master_pid}/task/{self.master_pid}/children").read_text().split()
        except OSError:
            return []

    def _held(self) -> int:
        total = 0
        for pid in self._workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(self.folder):
                        total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
                except OSError:
                    continue
        for path in Path(self.folder).rglob("*"):
            if path.is_file():
                total += path.stat().st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._held())
            time.sleep(0.02)

    def __enter__(self) -> "SpoolWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server let this client send before it answered or closed
    seconds: float
    spooled: int  # peak bytes the web workers held in temporary files meanwhile

    def __str__(self) -> str:
        return (
            f"{self.status} after {self.sent / MiB:.1f} MiB sent in {self.seconds:.1f}s, "
            f"{self.spooled / MiB:.1f} MiB spooled: {self.body[:200]!r}"
        )


def _parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes, bool]:
    """(status, headers, body, complete) of an HTTP response read so far."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b"", False
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        if not body.endswith(b"0\r\n\r\n"):
            return status, headers, body, False
        decoded = b""
        while True:
            size, _, rest = body.partition(b"\r\n")
            if int(size, 16) == 0:
                return status, headers, decoded, True
            decoded, body = decoded + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
    length = headers.get("content-length")
    return status, headers, body, length is not None and len(body) >= int(length)


def _request_head(
    platform, method: str, path: str, headers: dict[str, str], *, chunked: bool, total: int = 0
) -> bytes:
    """The request line and headers of a body sent chunked, or announced as `total` bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(platform.web_url).netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_big(
    platform,
    path: str,
    *,
    chunked: bool,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    total: int = STREAM_BYTES,
    body: bytes | None = None,
    deadline: float = 90,
) -> Answer:
    """Send `body` (else `total` filler bytes), chunked or announced by Content-Length, in 64 KiB pieces; stop
    sending when the server answers or closes."""
    if body is not None:
        total = len(body)
    url = urlsplit(platform.web_url)
    piece = b"0032" + b"a" * (PIECE - 4)  # starts like a pkt-line, so the git view reads on as it would
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    with SpoolWatch(platform.processes["web"].pid, Path(platform.env["TMPDIR"])) as watch:
        sock.sendall(_request_head(platform, method, path, headers or {}, chunked=chunked, total=total))
        sock.setblocking(False)
        started = time.monotonic()
        sent, pending, received, writing = 0, b"", b"", True
        while time.monotonic() - started < deadline:
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 1)
            if readable:
                try:
                    data = sock.recv(PIECE)
                except ConnectionResetError:
                    break
                if not data:
                    break
                received += data
                if _parse(received)[3]:
                    break
                continue
            if writable:
                if not pending:
                    if sent >= total:
                        writing = False
                        continue
                    if body is not None:
                        piece = body[sent : sent + PIECE]
                    pending = (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
                    if chunked and sent + len(piece) >= total:
                        pending += b"0\r\n\r\n"
                try:
                    written = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    writing = False
                    continue
                pending = pending[written:]
                if not pending:
                    sent += len(piece)
        seconds = time.monotonic() - started
    sock.close()
    status, response_headers, body, _ = _parse(received)
    return Answer(status, response_headers, body, sent, seconds, watch.peak)


def assert_refused_early(answer: Answer, *, cap: int, json_detail: bool = True) -> None:
    print(answer)
    assert answer.status == 413, str(answer)
    assert answer.sent < EARLY, str(answer)
    assert answer.spooled <= cap + SPOOL_SLACK, str(answer)
    assert answer.seconds < 20, str(answer)
    if json_detail:
        assert answer.headers.get("content-type", "").startswith("application/json"), str(answer)
        assert "request body" in httpx.Response(413, content=answer.body).json()["detail"]


MODES = [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]


@pytest.mark.parametrize("chunked", MODES)
def test_a_strangers_huge_token_request_is_refused_before_it_is_stored(berth_platform, chunked):
    answer = send_big(
        berth_platform, "/api/v1/auth/token", chunked=chunked, headers={"Content-Type": "application/json"}
    )
    assert_refused_early(answer, cap=0)


@pytest.mark.parametrize("chunked", MODES)
def test_an_authenticated_api_post_is_capped_too(berth_platform, tenant, chunked):
    answer = send_big(
        berth_platform,
        "/api/v1/apps",
        chunked=chunked,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {tenant.token}"},
    )
    assert_refused_early(answer, cap=0)


@pytest.mark.parametrize("chunked", MODES)
def test_the_dashboard_login_form_is_capped(berth_platform, chunked):
    answer = send_big(
        berth_platform,
        "/login/",
        chunked=chunked,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_refused_early(answer, cap=0)


def _dashboard_session(platform) -> dict[str, str]:
    """Headers of a logged-in dashboard session (cookie and CSRF token), as a browser would send them."""
    with httpx.Client(base_url=platform.web_url, follow_redirects=False) as client:
        page = client.get("/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        login = client.post(
            "/login/", data={"username": "dev", "password": "pw-123456", "csrfmiddlewaretoken": csrf}
        )
        assert login.status_code == 302, login.text
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return {
            "Cookie": cookies,
            "X-CSRFToken": client.cookies["csrftoken"],
            "Origin": platform.web_url,
            "Content-Type": "application/x-www-form-urlencoded",
        }


@pytest.mark.parametrize("chunked", MODES)
def test_a_dashboard_form_is_capped(berth_platform, tenant, chunked):
    headers = _dashboard_session(berth_platform)
    answer = send_big(berth_platform, f"/apps/{tenant.app.name}/config/set", chunked=chunked, headers=headers)
    assert_refused_early(answer, cap=0)


def _git_headers(token: str, kind: str) -> dict[str, str]:
    basic = base64.b64encode(f"git:{token}".encode()).decode()
    return {"Authorization": f"Basic {basic}", "Content-Type": f"application/x-{kind}-request"}


@pytest.fixture(scope="module")
def big_push(tmp_path_factory) -> bytes:
    """A real receive-pack request body: the command creating `main`, then a 64 MiB pack (one random file)."""
    return _receive_pack_body(tmp_path_factory.mktemp("big-push"), STREAM_BYTES)


def _receive_pack_body(work: Path, size: int) -> bytes:
    """A real receive-pack request body: the command creating `main`, then a pack of one random file of `size`."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "a"}
    env["GIT_COMMITTER_EMAIL"] = "a@x"

    def git(*args: str, stdin: bytes | None = None) -> bytes:
        return subprocess.run(
            ["git", *args], cwd=work, env=env, input=stdin, capture_output=True, check=True
        ).stdout

    git("init", "-q", "-b", "main")
    (work / "big.bin").write_bytes(os.urandom(size))
    git("add", "big.bin")
    git("commit", "-q", "-m", "big")
    sha = git("rev-parse", "HEAD").decode().strip()
    pack = git("pack-objects", "--stdout", "--revs", "-q", stdin=f"{sha}\n".encode())
    command = f"{'0' * 40} {sha} refs/heads/main\0report-status\n".encode()
    return f"{len(command) + 4:04x}".encode() + command + b"0000" + pack


@pytest.mark.parametrize("chunked", MODES)
def test_a_push_over_the_cap_is_refused_without_being_read_whole(berth_platform, tenant, big_push, chunked):
    answer = send_big(
        berth_platform,
        f"/git/{tenant.app.name}.git/git-receive-pack",
        chunked=chunked,
        body=big_push,
        headers=_git_headers(tenant.token, "git-receive-pack"),
    )
    assert_refused_early(answer, cap=MAX_PUSH_BYTES, json_detail=False)
    assert b"push too large" in answer.body
    assert b"BERTH_GIT_MAX_PUSH_BYTES" in answer.body


@pytest.mark.parametrize("chunked", MODES)
def test_a_strangers_push_body_is_capped(berth_platform, tenant, chunked):
    answer = send_big(
        berth_platform,
        f"/git/{tenant.app.name}.git/git-receive-pack",
        chunked=chunked,
        headers=_git_headers("not-a-token", "git-receive-pack"),
    )
    # Refused by the door before authentication could say 401: the body is what is attacked.
    assert answer.status in (401, 413), str(answer)
    assert answer.sent < EARLY, str(answer)
    assert answer.spooled <= MAX_PUSH_BYTES + SPOOL_SLACK, str(answer)


@pytest.mark.parametrize("chunked", MODES)
def test_a_fetch_request_is_capped_small(berth_platform, tenant, chunked):
    answer = send_big(
        berth_platform,
        f"/git/{tenant.app.name}.git/git-upload-pack",
        chunked=chunked,
        headers=_git_headers(tenant.token, "git-upload-pack"),
    )
    # within its cap a body is Django's to spool (in memory up to 2.5 MiB): the cut is what is checked
    assert_refused_early(answer, cap=limits.GIT_MAX_FETCH_BYTES, json_detail=False)


def test_a_ref_listing_with_a_body_is_capped(berth_platform, tenant):
    answer = send_big(
        berth_platform,
        f"/git/{tenant.app.name}.git/info/refs?service=git-upload-pack",
        chunked=True,
        method="GET",
        headers=_git_headers(tenant.token, "git-upload-pack"),
    )
    # within its cap a body is Django's to spool (in memory up to 2.5 MiB): the cut is what is checked
    assert_refused_early(answer, cap=limits.GIT_MAX_FETCH_BYTES, json_detail=False)


def test_a_real_git_push_over_the_cap_says_why_and_changes_nothing(berth_platform, tenant, repo):
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120)

    # over the cap by less than the door reads on to a body's end (LINGER_BYTES): git has sent it all when the
    # answer comes, and reads it; before that, git was sometimes still sending when the connection closed, and
    # showed only "RPC failed; curl 55 Send failure: Connection reset by peer" (in three make test runs)
    (repo / "big.bin").write_bytes(os.urandom(MAX_PUSH_BYTES + LINGER_BYTES // 2))
    git("add", "-A")
    git("commit", "-q", "-m", "too big")
    pushed = git("push", "berth", "HEAD:main")
    print(pushed.stderr)
    assert pushed.returncode != 0
    assert "remote: error: push too large" in pushed.stderr
    assert "BERTH_GIT_MAX_PUSH_BYTES" in pushed.stderr
    assert git("ls-remote", "berth").stdout.strip() == ""


def _send_whole_then_read(platform, path: str, headers: dict[str, str], body: bytes) -> tuple[bytes, str]:
    """Send `body` chunked to its end, then read the answer to the connection's end: what came, and how the
    connection ended ("eof", or the error that ended it)."""
    url = urlsplit(platform.web_url)
    received = b""
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        try:
            sock.sendall(_request_head(platform, "POST", path, headers, chunked=True))
            for start in range(0, len(body), PIECE):
                chunk = body[start : start + PIECE]
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            while data := sock.recv(PIECE):
                received += data
        except OSError as exc:
            return received, type(exc).__name__
    return received, "eof"


def test_a_body_a_little_over_the_cap_is_read_to_its_end_so_the_client_reads_the_answer(
    berth_platform, tenant, tmp_path
):
    """Over the cap by less than LINGER_BYTES, the rest of a body is read and dropped before the answer: a server
    that closes while a body still comes resets the connection, and the client may lose the answer (a real git
    push showed "curl 55 Send failure: Connection reset by peer" instead of why). Before: reset every time."""
    received, ended = _send_whole_then_read(
        berth_platform,
        f"/git/{tenant.app.name}.git/git-receive-pack",
        _git_headers(tenant.token, "git-receive-pack"),
        _receive_pack_body(tmp_path, MAX_PUSH_BYTES + LINGER_BYTES // 2),
    )
    assert ended == "eof", (ended, received[:300])
    status, _, body, _ = _parse(received)
    assert status in (200, 413) and b"push too large" in body, received[:600]  # 200: in git's own protocol


def test_a_request_under_the_cap_still_reaches_the_view(berth_platform):
    body = b'{"username": "nobody", "password": "' + b"p" * (MAX_REQUEST_BYTES - 100) + b'"}'
    response = httpx.post(
        f"{berth_platform.web_url}/api/v1/auth/token",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (400, 401), response.text


def _ws_url(platform, path: str) -> str:
    return platform.web_url.replace("http://", "ws://") + path


@pytest.mark.parametrize("size", [1 * MiB, 12 * MiB], ids=["1MiB", "12MiB"])
def test_an_oversized_websocket_message_closes_the_socket_with_1009(berth_platform, tenant, size):
    url = _ws_url(berth_platform, f"/ws/apps/{tenant.app.name}/events")
    with connect(url, additional_headers={"Authorization": f"Bearer {tenant.token}"}, max_size=None) as ws:
        started = time.monotonic()
        try:
            ws.send(b"x" * size)
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        except TimeoutError:
            code = "still open after 10 s"
        print(f"{size // MiB} MiB frame: closed {code} after {time.monotonic() - started:.1f}s")
        assert code == 1009


def test_an_endless_request_head_is_cut_with_431(berth_platform):
    url = urlsplit(berth_platform.web_url)
    line = b"X-Pad: " + b"a" * 8000 + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url.netloc}\r\n".encode())
        try:
            while sent < STREAM_BYTES:
                sock.sendall(line)
                sent += len(line)
        except OSError:
            pass  # the server closed: what it said is still to be read
        try:
            answer = sock.recv(PIECE)
        except (TimeoutError, ConnectionResetError) as exc:
            answer = repr(exc).encode()
    print(f"{sent / MiB:.1f} MiB of headers sent: {answer[:120]!r}")
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert sent < EARLY


def test_the_consumers_close_a_message_over_the_cap_under_any_server(
    transactional_db, make_user, make_team, make_app
):
    """Not every ASGI server caps WebSocket messages as Berth's uvicorn worker does: the consumers hold the line."""
    owner = make_user()
    app = make_app(f"caps-{os.getpid() % 10000}", team=make_team(owner=owner), actor=owner)
    _, token = token_create(user=owner, name="t")

    async def scenario() -> int:
        comm = WebsocketCommunicator(
            application,
            f"/ws/apps/{app.name}/events",
            headers=[(b"authorization", f"Bearer {token}".encode())],
        )
        assert (await comm.connect(timeout=5))[0]
        await comm.send_to(text_data="x" * (limits.MAX_WS_MESSAGE_BYTES + 1))
        while (message := await comm.receive_output(timeout=5))["type"] != "websocket.close":
            pass
        await comm.wait()
        return message.get("code")

    assert async_to_sync(scenario)() == 1009

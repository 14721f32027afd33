"""How log lines leave Berth for a drain: RFC 5424 syslog messages, framed with octet counting (RFC 6587), sent
over TCP (`syslog://host:port`), TLS (`syslog+tls://host:port`) or in batched HTTPS POSTs (`https://…`, the body
logplex-framed as Heroku's HTTPS drains are: `application/logplex-1`, the same octet-counted messages back to back).

Drain URLs are a tenant's word, so every connection goes to an address just checked by berth.core.outbound (no
loopback, private, link-local or metadata address unless BERTH_WEBHOOKS_ALLOW_PRIVATE), and TLS is verified
against certifi's CA bundle or BERTH_DRAINS_CA_BUNDLE (a receiver behind a private CA) with the URL's host name.
"""

import select
import socket
import ssl
import urllib.parse
import uuid

import certifi
import urllib3

from berth.core.env import env
from berth.core.outbound import OutboundRefused, url_address, url_check

SCHEMES = ("syslog", "syslog+tls", "https")
CONNECT_TIMEOUT, SEND_TIMEOUT = 5, 10
USER_AGENT = "Berth-Drains/1"
FACILITY = 23  # local7, as Heroku's drains send
SEVERITY = {"stderr": 3, "gap": 4}  # error, warning; everything else is info (6)
NILVALUE = "-"


class DrainRefused(OutboundRefused):
    """A drain URL Berth will not send to (bad scheme, no port, a private address…): one line, shown to the user."""


def drain_url_check(url: str) -> urllib.parse.SplitResult:
    """The parts of a drain URL (no address resolved yet); DrainRefused with a one-line reason otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise DrainRefused(
            f"{url[:100]!r}: a drain URL is syslog://host:port, syslog+tls://host:port or https://…"
        )
    if parts.scheme == "https":
        try:
            return url_check(url)
        except OutboundRefused as exc:
            raise DrainRefused(str(exc)) from None
    if not parts.hostname or parts.username or parts.password:
        raise DrainRefused(f"{url[:100]!r}: a syslog drain is {parts.scheme}://host:port, nothing more")
    try:
        port = parts.port
    except ValueError:
        raise DrainRefused(f"{url[:100]!r} has an invalid port") from None
    if not port:
        raise DrainRefused(f"{url[:100]!r}: a syslog drain needs its port ({parts.scheme}://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DrainRefused(f"{url[:100]!r}: a syslog drain is {parts.scheme}://host:port, without a path")
    return parts


def drain_address(parts: urllib.parse.SplitResult) -> str:
    """The address to connect to, every address of the host public (or private ones allowed); DrainRefused."""
    try:
        return url_address(parts)
    except OutboundRefused as exc:
        raise DrainRefused(str(exc)) from None


def ca_bundle() -> str:
    return env("BERTH_DRAINS_CA_BUNDLE") or env("BERTH_WEBHOOKS_CA_BUNDLE") or certifi.where()


def _token(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most `limit` characters, "-" if empty."""
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or NILVALUE


def syslog_message(*, app: str, fields: dict[str, str]) -> bytes:
    """One log entry (berth.observe.services LOG_FIELDS) as an RFC 5424 message: HOSTNAME the app, APP-NAME `app`
    for the app's own output or `berth` for the router's and the platform's lines (as Heroku's `heroku`),
    PROCID the instance (`web.1`, `router`) or the event's kind."""
    stream = fields.get("stream", "")
    process = fields.get("process", "")
    severity = SEVERITY.get(stream, 6)
    source = "app" if stream in ("stdout", "stderr") else "berth"
    procid = fields.get("instance") or process
    line = fields.get("line", "").replace("\n", " ")
    header = (
        f"<{FACILITY * 8 + severity}>1 {_token(fields.get('ts', ''), 64)} {_token(app, 255)} {source} "
        f"{_token(procid, 128)} - -"
    )
    return f"{header} {line}".encode()


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: "<length> <message>"."""
    return b"%d %s" % (len(message), message)


class Sender:
    """Sends batches of framed messages to one drain; raises OSError, DrainRefused or urllib3 errors."""

    def send(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SyslogSender(Sender):
    """A TCP (or TLS) connection kept open between batches; reopened after an error or when the receiver closed
    it (checked before every batch, so a batch is not written into a connection already dead)."""

    def __init__(self, parts: urllib.parse.SplitResult):
        self.parts = parts
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        address = drain_address(self.parts)
        raw = socket.create_connection((address, self.parts.port), timeout=CONNECT_TIMEOUT)
        raw.settimeout(SEND_TIMEOUT)
        if self.parts.scheme != "syslog+tls":
            return raw
        context = ssl.create_default_context(cafile=ca_bundle())
        try:
            return context.wrap_socket(raw, server_hostname=self.parts.hostname)
        except BaseException:
            raw.close()
            raise

    def _alive(self, sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        try:
            # a syslog receiver never answers: readable means it closed (or sent junk, which is dropped)
            return bool(sock.recv(4096))
        except (OSError, ssl.SSLError):
            return False

    def send(self, frames: list[bytes]) -> None:
        if self.sock is not None and not self._alive(self.sock):
            self.close()
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(b"".join(frames))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


class HttpsSender(Sender):
    """One POST per batch (logplex framing), to the address just checked; a 2xx answer delivers the batch."""

    def __init__(self, parts: urllib.parse.SplitResult, *, token: str):
        self.parts = parts
        self.token = token

    def send(self, frames: list[bytes]) -> None:
        address = drain_address(self.parts)
        pool = urllib3.HTTPSConnectionPool(
            address,
            self.parts.port or 443,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=SEND_TIMEOUT),
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle(),
            server_hostname=self.parts.hostname,  # SNI and the certificate's name: the URL's host
            assert_hostname=self.parts.hostname,
        )
        path = (self.parts.path or "/") + (f"?{self.parts.query}" if self.parts.query else "")
        try:
            response = pool.urlopen(
                "POST",
                path,
                body=b"".join(frames),
                headers={
                    "Host": self.parts.netloc,
                    "Content-Type": "application/logplex-1",
                    "Logplex-Msg-Count": str(len(frames)),
                    "Logplex-Frame-Id": uuid.uuid4().hex,
                    "Logplex-Drain-Token": self.token,
                    "User-Agent": USER_AGENT,
                },
                redirect=False,
                retries=False,
                preload_content=False,
            )
            try:
                response.read(4096, decode_content=False)
            finally:
                response.release_conn()
        finally:
            pool.close()
        if not 200 <= response.status < 300:
            raise OSError(f"the drain answered HTTP {response.status}")


def sender_for(*, url: str, token: str) -> Sender:
    parts = drain_url_check(url)
    return HttpsSender(parts, token=token) if parts.scheme == "https" else SyslogSender(parts)

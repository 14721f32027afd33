"""HTTPS clients for the router's TLS tests and benchmarks: connections to 127.0.0.1 that name a hostname by SNI
(no DNS needed), the serial a fresh handshake is served, and keep-alive HTTPS load bounded in time and count.
Kept free of Django so bench/ can import it."""

import http.client
import socket
import ssl
import threading
import time

from cryptography import x509


class LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:`port` naming `hostname` (SNI, certificate check and Host header)."""

    def __init__(self, hostname: str, port: int, *, context: ssl.SSLContext, timeout: float = 10.0):
        super().__init__(hostname, port, context=context, timeout=timeout)

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    def peer_serial(self) -> str:
        return serial_of_der(self.sock.getpeercert(binary_form=True))


def serial_of_der(der: bytes) -> str:
    return format(x509.load_der_x509_certificate(der).serial_number, "X")


def unverified_context() -> ssl.SSLContext:
    """For looking at what is served (the default certificate is self-signed): no check at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_certificate(port: int, hostname: str | None, *, timeout: float = 5.0) -> x509.Certificate:
    """The leaf a fresh TLS handshake with 127.0.0.1:`port` is served when naming `hostname` (None: no SNI)."""
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        with unverified_context().wrap_socket(sock, server_hostname=hostname) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def served_serial(port: int, hostname: str | None, *, timeout: float = 5.0) -> str:
    return format(served_certificate(port, hostname, timeout=timeout).serial_number, "X")


class HttpsKeepAliveLoad:
    """Threads sending GETs over keep-alive HTTPS connections (the test CA trusted), bounded in time and count.

    A failure is any exception or non-200 answer, with no retry by the client. Each answer is recorded with the
    serial of the certificate its connection was served.
    """

    def __init__(
        self,
        *,
        port: int,
        hostname: str,
        context: ssl.SSLContext,
        threads: int = 2,
        duration: float = 15.0,
        max_requests: int = 100_000,
        path: str = "/",
    ):
        self.port, self.hostname, self.context, self.path = port, hostname, context, path
        self.duration, self.max_requests, self.threads = duration, max_requests, threads
        self.answers: list[tuple[float, str]] = []  # (time, serial of the connection's certificate)
        self.failures: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "HttpsKeepAliveLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.duration + 15)

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failures)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.total
        while self.total - start < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        connection: LoopbackHTTPSConnection | None = None
        serial = ""
        while not self._stop.is_set() and time.monotonic() < deadline and self.total < self.max_requests:
            try:
                if connection is None:
                    connection = LoopbackHTTPSConnection(self.hostname, self.port, context=self.context)
                    connection.connect()
                    serial = connection.peer_serial()
                    with self._lock:
                        self.connections += 1
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read().decode(errors="replace")
                with self._lock:
                    if response.status == 200:
                        self.answers.append((time.monotonic(), serial))
                    else:
                        self.failures.append(f"HTTP {response.status}: {body[:80]}")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


class SerialProbe:
    """A thread making fresh TLS handshakes naming `hostname` back to back (bounded), recording (time, serial):
    when a replaced certificate is first served to a new connection."""

    def __init__(self, *, port: int, hostname: str, duration: float = 20.0, interval: float = 0.01):
        self.port, self.hostname, self.duration, self.interval = port, hostname, duration, interval
        self.seen: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "SerialProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.duration + 10)

    def first_seen(self, serial: str, *, since: float) -> float | None:
        """When a handshake begun at or after `since` was first served `serial` (None: never)."""
        return next((at for at, seen in list(self.seen) if at >= since and seen == serial), None)

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                self.seen.append((started, served_serial(self.port, self.hostname)))
            except (OSError, ValueError) as exc:
                self.failures.append(repr(exc))
            time.sleep(self.interval)

"""A test certificate authority, a TLS terminator and a self-signed loopback certificate, for the tests of what speaks
HTTPS to Berth (the CLI, git) and of the local TLS servers tests start in place of the outside world (pebble's own
HTTPS, the drain receivers).

`TestCA` makes a real CA with `cryptography` (a root, and leaf certificates it signs for chosen names);
`TlsTerminator` ends real TLS on a loopback port with one of those leaves and relays the plain bytes to a port of
the test's own server (the live server), as the router does in TCP terms. Test equipment, so it lives with the tests.
"""

import datetime
import ipaddress
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Leaf:
    """A certificate the CA signed, with its key, as PEM files (and their text)."""

    certificate_pem: str
    key_pem: str
    certificate_path: Path
    key_path: Path
    not_after: datetime.datetime
    serial: int


class TestCA:
    """A root CA in `directory` (root.pem: what clients are told to trust) that signs leaves for any names."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, directory: Path, *, name: str = "Berth test CA"):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.root_pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.root_path = directory / "root.pem"
        self.root_path.write_text(self.root_pem)

    def issue(
        self,
        *names: str,
        days: float = 30,
        not_before: datetime.datetime | None = None,
        stem: str | None = None,
    ) -> Leaf:
        """A server certificate for `names` (DNS names, or IP addresses such as 127.0.0.1) valid `days` from
        `not_before` (default: a few minutes ago), written as <stem>.crt and <stem>.key."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        not_after = start + datetime.timedelta(days=days)
        alternatives: list[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = _pem_key(key).decode()
        stem = stem or names[0].replace("*", "wildcard")
        certificate_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        certificate_path.write_text(certificate_pem)
        key_path.write_text(key_pem)
        key_path.chmod(0o600)
        return Leaf(certificate_pem, key_pem, certificate_path, key_path, not_after, serial)


class TlsTerminator:
    """Real TLS on 127.0.0.1:<port> with `leaf`, relaying the decrypted bytes to 127.0.0.1:<upstream_port>.

    One thread per connection relays both directions: an SSL socket is never used by two threads at once (a read
    in one thread while another sent close_notify or closed it aborted a test process inside OpenSSL, once).
    `stop()` closes the listening socket and ends every open connection."""

    def __init__(self, leaf: Leaf, upstream_port: int):
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(leaf.certificate_path, leaf.key_path)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_failed = 0
        self._open: set[socket.socket] = set()
        self._relays: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            relay = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._relays.append(relay)
            relay.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)  # a client that never finishes its handshake cannot hold the thread for long
        with self._lock:
            self._open.add(client)
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.handshakes_failed += 1
                self._open.discard(client)
            client.close()
            return
        with self._lock:  # the handshake took the connection over from `client`
            self._open.discard(client)
            self._open.add(secure)
        secure.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            upstream = None
        try:
            if upstream is not None:
                upstream.settimeout(None)
                with self._lock:
                    self._open.add(upstream)
                self._relay(secure, upstream)
        finally:
            for sock in (secure, upstream):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._open.difference_update((secure, upstream))

    @staticmethod
    def _relay(secure: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Bytes each way until either side ends; then close_notify to the TLS client (a client reading to the end,
        curl or git, needs it) if the upstream ended. An upstream that stops reading (it answered early, a 413
        while the client still sends) still has its answer relayed: the client is no longer read."""
        with selectors.DefaultSelector() as selector:
            selector.register(secure, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            client_read = True
            while True:
                for key, _ in selector.select():
                    source = key.fileobj
                    if source is secure and not client_read:
                        continue
                    target = upstream if source is secure else secure
                    try:  # the socket blocks: a TLS record arrived in part is read whole
                        data = source.recv(65536)
                        while data and source is secure and secure.pending():  # decrypted, not yet read
                            data += secure.recv(secure.pending())
                    except OSError:
                        return
                    if not data:
                        if source is upstream:
                            try:
                                secure.unwrap()
                            except (OSError, ValueError):
                                pass
                        return
                    try:
                        target.sendall(data)
                    except OSError:
                        if target is not upstream:
                            return
                        selector.unregister(secure)
                        client_read = False

    def stop(self) -> None:
        # shut down before closing: a thread blocked in accept() or recv() wakes up (a close alone does not wake it,
        # and the accept thread's join waited its whole timeout, 5 s, at each stop). The TCP connections only: the
        # relay thread that owns an SSL socket is the only one to touch its TLS state
        for sock in (self.listener, *self._snapshot()):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        self.listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            relays = list(self._relays)
        for relay in relays:
            relay.join(timeout=5)

    def _snapshot(self) -> list[socket.socket]:
        with self._lock:
            return list(self._open)


def loopback_certificate(
    directory: Path, *, common_name: str, stem: str = "", days: int = 1
) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `localhost` and 127.0.0.1: writes `<stem>cert.pem` and
    `<stem>key.pem` into `directory`; returns their paths (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}cert.pem", directory / f"{stem}key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path

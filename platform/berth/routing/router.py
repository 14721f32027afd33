"""The router seam: which hostnames reach which endpoints of an app.

`get_router()` returns the configured implementation; the real one is `HaproxyRouter` (berth.routing.haproxy_router),
which changes a running HAProxy only through its admin socket; `InMemoryRouter` (berth.routing.memory) serves fast
tests of the layers above. Every call states the whole desired state of an app, so calling it twice,
or after a crash half-way, converges on the same result.
"""

import base64
import ipaddress
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

# fullmatch: `$` accepts a trailing newline, which would end a line of the HAProxy map early
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
# an ACME token (RFC 8555 8.3: base64url) and a key authorization (token "." base64url thumbprint): both go into
# admin socket commands and a map file, so nothing else passes
ACME_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
KEY_AUTHORIZATION_RE = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")
# a certificate's name is the stem of its file in the router's directory: no dot first, no slash, no "..")
CERTIFICATE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
PEM_MAX_BYTES = 64 * 1024
# HAProxy reads an admin socket payload (`set ssl cert <<`) into one buffer (tune.bufsize, 16 KiB by default) with the
# command, and drops a bigger one without an answer. A real bundle (key, leaf, one or two intermediates) is 3-8 KB.
BUNDLE_MAX_BYTES = 15_000
PRIVATE_KEY_PEM_RE = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)


class RouterError(RuntimeError):
    """HAProxy refused a command or did not come back from a reload."""


class RouterRefused(RouterError, ValueError):
    """Input the router refuses before changing anything (a malformed token, name or PEM bundle)."""


@dataclass(frozen=True)
class ServedCertificate:
    """A certificate as the router serves it (or would serve it, when read from a PEM bundle)."""

    name: str  # the certificate's stable name (a safe file stem, [a-z0-9.-], e.g. "c-42")
    serial: str  # hex, upper case, no colons, no leading zeros (`show ssl cert`'s "Serial:", normalised)
    not_after: datetime  # timezone-aware UTC
    hostnames: tuple[str, ...]  # the SAN DNS names, lower case


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


Desired = dict[str, tuple[list[str], list[Endpoint]]]


class Router(ABC):
    """Routes each app's hostnames to its endpoints. Implementations: HaproxyRouter (real), InMemoryRouter."""

    @abstractmethod
    def apply(
        self,
        *,
        app: str,
        hostnames: list[str],
        endpoints: list[Endpoint],
        drain_timeout: float | None = None,
        wait: bool = True,
        retire_idle: bool = True,
    ) -> None:
        """Make `app` reachable at exactly these hostnames, served by exactly these endpoints.

        New endpoints take traffic before removed ones are drained, so the app always has a ready server. A
        removed endpoint the checks have marked down is taken out at once: its requests can never finish.
        With wait=False the call returns once removed endpoints get no new requests, and their drain finishes in
        a thread of this process (for the watcher, which must not stop following every app while one drains).
        With retire_idle=False a removed endpoint whose requests have all ended stays out of rotation, draining,
        until a later apply or sync finds it down (or a grace period passed): for a caller that stops the
        endpoint's process next, so the process closes its idle keep-alive connections (the router would reset
        them).
        """

    @abstractmethod
    def remove(self, *, app: str, drain_timeout: float | None = None) -> None:
        """Unmap the app's hostnames, drain its endpoints and free what it used."""

    @abstractmethod
    def state(self) -> dict[str, dict]:
        """{app: {"hostnames": [...], "endpoints": [(address, port, status), ...]}} as the router has it."""

    @abstractmethod
    def routed_endpoints(self, *, app: str) -> set[Endpoint]:
        """The endpoints last applied for `app` (empty when it is not routed), read without asking each server's
        state: cheap enough for every reconcile of every app."""

    @abstractmethod
    def applied_routes(self) -> dict[str, tuple[set[str], set[Endpoint]]]:
        """{app: (hostnames, endpoints)} as last applied, for every routed app at once and without asking each
        server's state: the watcher's full round compares it with what runs."""

    @abstractmethod
    def sync(self, desired: Desired, *, drain_timeout: float | None = None) -> None:
        """Make the router hold exactly `desired` ({app: (hostnames, endpoints)}); other apps are removed."""

    def drifted(self) -> list[str]:
        """Apps whose routes differ from what was last applied, e.g. because the router restarted: sync them."""
        return []

    # -- HTTPS ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def challenge_put(self, *, token: str, key_authorization: str) -> None:
        """From now on every hostname answers GET /.well-known/acme-challenge/<token> with `key_authorization`
        (200, text/plain), on the HTTP port, before any redirect or app routing. Token: [A-Za-z0-9_-]{1,128},
        else RouterRefused (a RouterError)."""

    @abstractmethod
    def challenge_remove(self, *, token: str) -> None:
        """Stop answering `token`'s challenge; a token not answered is no error (a retried call converges)."""

    @abstractmethod
    def certificate_put(
        self, *, name: str, pem: str, hostnames: Iterable[str] | None = None
    ) -> ServedCertificate:
        """Serve `pem` (PEM private key + leaf certificate + chain, one bundle) by SNI on the HTTPS port: for
        exactly `hostnames` when given (SNI filters: a tenant's wildcard then answers only for the names Berth gave
        it, never for another app's), else for its SAN names. Adds a new one or replaces one of the same name through the runtime API (new/set/commit ssl cert,
        add ssl crt-list), never a reload; written to disk first so a restarted router serves it at once. Reads back
        what the router serves after the commit and returns it; RouterError if it differs from `pem`'s leaf."""

    @abstractmethod
    def certificate_remove(self, *, name: str) -> None:
        """Stop serving the certificate `name` (and forget it on disk); a name not served is no error."""

    @abstractmethod
    def certificates(self) -> dict[str, ServedCertificate]:
        """What the running router serves now, asked through the runtime API (show ssl cert)."""

    @abstractmethod
    def host_maintenance_put(self, *, hostname: str, page: str) -> None:
        """From now on `hostname` answers every request (but ACME challenges) with `page` (HTML, at most
        MAINTENANCE_PAGE_MAX bytes, else RouterRefused), status 503 and Retry-After, from the router itself: the
        app's processes keep running. Persisted like the hosts map."""

    @abstractmethod
    def host_maintenance_remove(self, *, hostname: str) -> None:
        """`hostname` is routed to its app again; a hostname not in maintenance is no error."""

    @abstractmethod
    def host_tls_put(self, *, hostname: str, redirect_https: bool, hsts: bool) -> None:
        """Per hostname: plain HTTP answers 308 to https://<host>[:BERTH_HTTPS_PORT if not 443]<path> (except
        /.well-known/acme-challenge/), and/or HTTPS answers add Strict-Transport-Security: max-age=31536000.
        Persisted like the hosts map (a restarted router keeps it)."""

    @abstractmethod
    def host_tls_remove(self, *, hostname: str) -> None:
        """Neither redirect nor HSTS for `hostname` any more; a hostname without a policy is no error."""


def clean_hostnames(hostnames: Iterable[str]) -> list[str]:
    """Lower-cased, validated, without duplicates: they go into admin socket commands, so nothing else passes."""
    cleaned: list[str] = []
    for hostname in hostnames:
        name = str(hostname).strip().lower().rstrip(".")
        if not HOSTNAME_RE.fullmatch(name):
            raise ValueError(f"not a hostname: {hostname!r}")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def clean_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    cleaned: list[Endpoint] = []
    for endpoint in endpoints:
        try:
            address = str(ipaddress.ip_address(endpoint.address))
        except ValueError:
            raise ValueError(f"an endpoint's address must be an IP address: {endpoint.address!r}") from None
        if not isinstance(endpoint.port, int) or not 0 < endpoint.port < 65536:
            raise ValueError(f"not a port: {endpoint.port!r}")
        endpoint = Endpoint(address, endpoint.port)
        if endpoint not in cleaned:
            cleaned.append(endpoint)
    return cleaned


def check_token(token: str) -> str:
    if not isinstance(token, str) or not ACME_TOKEN_RE.fullmatch(token):
        raise RouterRefused(f"not an ACME token: {token!r}")
    return token


def check_key_authorization(key_authorization: str) -> str:
    if not isinstance(key_authorization, str) or not KEY_AUTHORIZATION_RE.fullmatch(key_authorization):
        raise RouterRefused(f"not an ACME key authorization: {key_authorization!r}")
    return key_authorization


def check_certificate_name(name: str) -> str:
    if not isinstance(name, str) or not CERTIFICATE_NAME_RE.fullmatch(name) or ".." in name:
        raise RouterRefused(f"not a certificate name ([a-z0-9][a-z0-9.-]*, at most 64): {name!r}")
    return name


MAINTENANCE_PAGE_MAX = 8 * 1024  # bytes: base64-encoded it travels in one admin socket line (~16 KB buffer)


def check_maintenance_page(page: str) -> str:
    """The page as the router stores it (base64 of its UTF-8); RouterRefused past MAINTENANCE_PAGE_MAX. Line breaks
    and other control characters become spaces (the same HTML): HAProxy's answer would print them as %0A."""
    data = re.sub(r"[\x00-\x1f\x7f]", " ", page).encode()
    if len(data) > MAINTENANCE_PAGE_MAX:
        raise RouterRefused(f"the maintenance page is {len(data)} bytes; the limit is {MAINTENANCE_PAGE_MAX}")
    return base64.b64encode(data).decode() or base64.b64encode(b" ").decode()


def check_tls_hostname(hostname: str) -> str:
    try:
        return clean_hostnames([hostname])[0]
    except ValueError as exc:
        raise RouterRefused(str(exc)) from None


def serial_hex(serial: int) -> str:
    """A serial number as Berth writes it everywhere: upper-case hex, no colons, no leading zeros."""
    return format(serial, "X")


def served_from_pem(*, name: str, pem: str) -> ServedCertificate:
    """What serving `pem` means: its leaf (the certificate of its private key) read with `cryptography`.

    RouterRefused unless the bundle holds exactly one private key and a certificate for it, in at most
    BUNDLE_MAX_BYTES once normalised (see read_bundle).
    """
    return read_bundle(name=name, pem=pem)[0]


def read_bundle(*, name: str, pem: str) -> tuple[ServedCertificate, str]:
    """(what serving `pem` means, the bundle as a router takes it: the private key, the leaf, then the rest of the
    chain in the order given, nothing else: no text between the blocks, no blank line)."""
    check_certificate_name(name)
    if not isinstance(pem, str) or len(pem.encode()) > PEM_MAX_BYTES:
        raise RouterRefused(f"a certificate bundle is a PEM text of at most {PEM_MAX_BYTES} bytes")
    data = pem.encode()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise RouterRefused("the bundle holds no PEM certificate") from None
    key_blocks = [match.group(0) for match in PRIVATE_KEY_PEM_RE.finditer(data)]
    if len(key_blocks) != 1:
        raise RouterRefused("the bundle must hold exactly one PEM private key")
    try:
        key = serialization.load_pem_private_key(key_blocks[0], password=None)
    except (ValueError, TypeError):
        raise RouterRefused("the bundle's private key cannot be read (encrypted or malformed)") from None
    public = _public_key_der(key.public_key())
    leaf = next((c for c in certificates if _public_key_der(c.public_key()) == public), None)
    if leaf is None:
        raise RouterRefused("no certificate of the bundle matches its private key")
    # everything written again from what was read: no CRLF, comment or blank line reaches the router
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    blocks = [key_pem.decode().strip()] + [
        c.public_bytes(serialization.Encoding.PEM).decode().strip()
        for c in [leaf, *(c for c in certificates if c is not leaf)]
    ]
    bundle = "\n".join(blocks) + "\n"
    if len(bundle.encode()) > BUNDLE_MAX_BYTES:
        raise RouterRefused(
            f"the certificate bundle is {len(bundle.encode())} bytes; the router takes at most {BUNDLE_MAX_BYTES}"
            " (fewer chain certificates, or a smaller key)"
        )
    return served_certificate(name=name, certificate=leaf), bundle


def _public_key_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def served_certificate(*, name: str, certificate: x509.Certificate) -> ServedCertificate:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hostnames = tuple(dict.fromkeys(h.lower() for h in san.get_values_for_type(x509.DNSName)))
    except x509.ExtensionNotFound:
        hostnames = ()
    return ServedCertificate(
        name=name,
        serial=serial_hex(certificate.serial_number),
        not_after=certificate.not_valid_after_utc,
        hostnames=hostnames,
    )


def check_app(app: str) -> str:
    if not isinstance(app, str) or not app.strip():
        raise ValueError(f"not an app name: {app!r}")
    return app


# The routers Berth ships, by name: dotted paths of factories imported when first asked for (as Django loads its own
# backends), so this interface never imports its implementations (they import it). ROUTERS holds factories
# registered at run time (a test's own router), which win over these.
ROUTER_BACKENDS = {
    "haproxy": "berth.routing.haproxy_router.HaproxyRouter",
    "memory": "berth.routing.memory.shared_memory_router",
}
ROUTERS: dict[str, Callable[[], Router]] = {}


def get_router() -> Router:
    """The router named by the BERTH_ROUTER setting ("haproxy" unless set)."""
    name = getattr(settings, "BERTH_ROUTER", "haproxy")
    factory = ROUTERS.get(name)
    if factory is None and name in ROUTER_BACKENDS:
        factory = import_string(ROUTER_BACKENDS[name])
    if factory is None:
        raise RouterError(
            f"BERTH_ROUTER={name!r} is not one of {sorted(set(ROUTERS) | set(ROUTER_BACKENDS))}"
        )
    return factory()

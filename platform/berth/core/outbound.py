"""Where Berth may send requests on a tenant's word (webhooks, repositories it follows): http(s) URLs whose host
resolves to public addresses only, unless BERTH_WEBHOOKS_ALLOW_PRIVATE (a private network's own git host or
receiver, and the tests). A tenant's URL must never reach the platform's own loopback, its metadata service or a
private network behind it (SSRF)."""

import ipaddress
import socket
import urllib.parse

from berth.core.env import env_bool


class OutboundRefused(Exception):
    """A target Berth will not reach (a private address without BERTH_WEBHOOKS_ALLOW_PRIVATE, a bad URL)."""


def allow_private() -> bool:
    return env_bool("BERTH_WEBHOOKS_ALLOW_PRIVATE", False)


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_check(url: str) -> urllib.parse.SplitResult:
    """The parts of an http(s) URL Berth may POST to (no address checked yet); OutboundRefused (one line) otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{url[:100]!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise OutboundRefused("the URL must not hold a user or password (put a token in its path or query)")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise OutboundRefused(f"{url[:100]!r} has an invalid port") from None
    return parts


def url_address(parts: urllib.parse.SplitResult) -> str:
    """The address to connect to for a checked URL: its host resolved, every address public (unless
    BERTH_WEBHOOKS_ALLOW_PRIVATE), IPv4 first. OutboundRefused for a private one; socket.gaierror if it does not
    resolve (a DNS failure may pass: a delivery retries it)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos}, key=lambda a: (":" in a, a))
    if not allow_private():
        for address in addresses:
            if not _address_allowed(address):
                raise OutboundRefused(
                    f"{parts.hostname} resolves to {address}, a private, loopback or reserved address; "
                    "Berth sends only to public addresses (BERTH_WEBHOOKS_ALLOW_PRIVATE=1 allows it)"
                )
    return addresses[0]


def url_refusal(url: str) -> str | None:
    """Why `url` cannot be a webhook, checked when it is added (its host must resolve now); None if it can."""
    try:
        url_address(url_check(url))
    except OutboundRefused as exc:
        return str(exc)
    except (socket.gaierror, UnicodeError) as exc:
        return f"{urllib.parse.urlsplit(url).hostname} does not resolve ({exc})"
    return None

"""Validation of names users choose. They end up in URLs, Docker labels and HAProxy maps, so they are strict."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError

# Every pattern here is used with fullmatch: `$` would also match before a trailing newline ("demo\n").
APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,29}")
RESERVED_APP_NAMES = frozenset(
    {
        "api",
        "www",
        "admin",
        "git",
        "static",
        "berth",
        "dashboard",
        "login",
        "logout",
        "healthz",
        "registry",
        "router",
        # the add-on images are berth/addon-<kind>: an app of that name would have its image GC collect them
        "addon-postgres",
        "addon-redis",
    }
)
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
CONFIG_VALUE_MAX_BYTES = 32 * 1024
PROCESS_RE = re.compile(r"[a-z0-9-]+")
DNS_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def validate_app_name(name) -> None:
    if not isinstance(name, str) or not APP_NAME_RE.fullmatch(name) or name.endswith("-"):
        raise ValidationError(
            {
                "name": "must be 2-30 characters: lowercase letters, digits and hyphens, starting with a "
                "letter and not ending with a hyphen"
            }
        )
    if name in RESERVED_APP_NAMES:
        raise ValidationError({"name": f"{name!r} is reserved"})


def validate_config_key(key) -> None:
    if not isinstance(key, str) or not CONFIG_KEY_RE.fullmatch(key):
        raise ValidationError(
            {"config": f"invalid key {str(key)[:60]!r}: use letters, digits and _, not starting with a digit"}
        )


# Set by Berth for every process; a config var of that name would be silently overridden, so it is refused.
RESERVED_CONFIG_KEYS = frozenset({"PORT"})


def validate_config_value(key: str, value) -> None:
    if key in RESERVED_CONFIG_KEYS:
        raise ValidationError(
            {
                "config": f"{key} is set by Berth for each process (the app must listen on $PORT); it cannot be set"
            }
        )
    if not isinstance(value, str):
        raise ValidationError({"config": f"the value of {key} must be a string (or null to unset it)"})
    if len(value.encode()) > CONFIG_VALUE_MAX_BYTES:
        raise ValidationError({"config": f"the value of {key} is larger than {CONFIG_VALUE_MAX_BYTES} bytes"})
    if "\x00" in value:
        raise ValidationError({"config": f"the value of {key} contains a NUL byte"})


def validate_process_name(process) -> None:
    if not isinstance(process, str) or not PROCESS_RE.fullmatch(process) or len(process) > 63:
        raise ValidationError({"process": f"invalid process type {str(process)[:60]!r}"})


def normalize_hostname(hostname) -> str:
    """Lowercase, without a trailing dot; ValidationError naming `hostname` unless it is a valid DNS name."""
    if not isinstance(hostname, str):
        raise ValidationError({"hostname": "must be a string"})
    # not stripped: "www.example.org\n" or " www.example.org" is a mistake (or a probe), refused, not cleaned
    host = hostname.lower().rstrip(".")
    labels = host.split(".")
    # isascii before lower() counts: the Kelvin sign (U+212A) lowercases to an ASCII "k"
    if (
        not hostname.isascii()
        or len(host) > 253
        or len(labels) < 2
        or not all(DNS_LABEL_RE.fullmatch(label) for label in labels)
    ):
        raise ValidationError({"hostname": f"{hostname[:80]!r} is not a valid DNS name"})
    if labels[-1].isdigit():
        raise ValidationError({"hostname": "must be a DNS name, not an IP address"})
    apps_domain = settings.BERTH_APPS_DOMAIN.lower().rstrip(".")
    if host == apps_domain or host.endswith("." + apps_domain):
        raise ValidationError(
            {
                "hostname": f"names under {apps_domain} are Berth's own; every app already has <app>.{apps_domain}"
            }
        )
    return host

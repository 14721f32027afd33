"""Encryption at rest for config values (Fernet, several keys for rotation).

The key comes from BERTH_ENCRYPTION_KEY (a comma-separated list: the first encrypts, all decrypt) or, when unset,
from BERTH_HOME/encryption_key, generated once (mode 0600). It is read here, not in settings, and re-read on each
use so a rotation (new key first, then `manage.py rotate_config_key`) needs only a restart of the processes.
"""

import functools
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from berth.core.env import env, secret_from_home


def _raw_keys() -> str:
    return env("BERTH_ENCRYPTION_KEY") or secret_from_home(
        settings.BERTH_HOME, "encryption_key", lambda: Fernet.generate_key().decode()
    )


@functools.lru_cache(maxsize=4)
def _fernet_for(raw: str) -> MultiFernet:
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ImproperlyConfigured("BERTH_ENCRYPTION_KEY is empty")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "BERTH_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each)"
        ) from None


def fernet() -> MultiFernet:
    return _fernet_for(_raw_keys())


def encrypt_text(clear: str) -> str:
    return fernet().encrypt(clear.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored config value cannot be decrypted with BERTH_ENCRYPTION_KEY; was the key changed "
            "without keeping the old one in the list?"
        ) from None


def encrypt_json(value) -> str:
    return encrypt_text(json.dumps(value, sort_keys=True))


def decrypt_json(token: str):
    return json.loads(decrypt_text(token)) if token else {}


def reencrypt(token: str) -> str:
    """The same clear value encrypted with the current (first) key."""
    return fernet().rotate(token.encode()).decode()

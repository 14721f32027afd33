"""Brute-force guards: failed sign-ins counted per account and per client address, and the API tokens a signed-in
user creates, per account and per address.

The counts live in Django's cache, which is Redis (settings.CACHES): every web process sees the same numbers and a
restart forgets none. Each count is a window that opens with its first event and closes `seconds` later whatever
happens inside it, so a lock always ends on time (a stranger hammering a locked account does not extend it).

An attempt takes its place in the counts *before* the password is checked (Redis INCR is atomic) and a successful
sign-in gives it back: a burst of parallel guesses cannot all slip past a check made before any of them failed,
and a user who signs in correctly, however often, never uses up anything. DRF's own throttles are not used for
this: they read, append and write back a history (DRF's docs call them fuzzy, not a brute-force defence) and count
requests, not failures.

Numbers (settings): BERTH_LOGIN_FAILURES failures per account and BERTH_LOGIN_FAILURES_PER_ADDRESS per address
within BERTH_LOGIN_WINDOW seconds, then every attempt for that account or from that address is refused until the
window closes; BERTH_TOKEN_CREATIONS_PER_HOUR new tokens per account and per address.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError


class Throttled(Exception):
    """Too many attempts: refused without looking at them. `retry_after` is whole seconds until the next is taken."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class GuardUnavailable(Exception):
    """The counts cannot be read (Redis does not answer): the guarded action is refused, never let through unguarded."""


@dataclass(frozen=True)
class _Taken:
    """One event counted in one window: what give_back() needs to return it."""

    key: str


@dataclass(frozen=True)
class SignInAttempt:
    """The places a sign-in attempt took in the counts (given back when it succeeds)."""

    taken: tuple[_Taken, ...]


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"


def _base_key(kind: str, subject: str) -> str:
    # Hashed: usernames and addresses are the client's bytes; the key stays short and free of control characters.
    return f"throttle:{kind}:{hashlib.sha256(subject.encode()).hexdigest()[:40]}"


def _take(kind: str, subject: str, *, limit: int, seconds: int) -> tuple[_Taken, int, int]:
    """Count one event for `subject`: (its place, the count in the window with it, seconds left in the window)."""
    base = _base_key(kind, subject)
    now = time.time()
    try:
        cache.add(f"{base}:opened", now, timeout=seconds)  # only the window's first event sets it
        opened = cache.get(f"{base}:opened", now)
        key = f"{base}:{opened:.6f}"  # the count of this window only: a new window starts again from zero
        cache.add(key, 0, timeout=seconds + 1)
        try:
            used = cache.incr(key)
        except ValueError:  # the window closed between the two calls
            used = 1
    except RedisError as exc:
        raise GuardUnavailable(f"the brute-force guard's store (Redis) does not answer: {exc}") from None
    return _Taken(key=key), used, max(1, math.ceil(opened + seconds - now))


def _give_back(taken: _Taken) -> None:
    try:
        cache.decr(taken.key)
    except ValueError:
        pass  # that window has closed already: nothing left to give back
    except RedisError:
        pass  # a success not given back only counts against the limit until the window closes


def sign_in_begin(*, username: str, remote_addr: str | None) -> SignInAttempt:
    """Count a sign-in attempt against its client address, then its account; Throttled if either is over its limit.

    The address goes first, so a stranger refused for their own address uses up nothing of the account's budget.
    Unknown usernames are counted exactly like real ones: the answers tell nobody which accounts exist.
    """
    window = settings.BERTH_LOGIN_WINDOW
    taken = []
    if remote_addr:
        place, used, retry = _take(
            "sign-in-address", remote_addr, limit=settings.BERTH_LOGIN_FAILURES_PER_ADDRESS, seconds=window
        )
        taken.append(place)
        if used > settings.BERTH_LOGIN_FAILURES_PER_ADDRESS:
            raise Throttled(
                f"too many failed sign-ins from your address; try again in {_in_words(retry)}",
                retry_after=retry,
            )
    place, used, retry = _take(
        "sign-in-account", username.casefold(), limit=settings.BERTH_LOGIN_FAILURES, seconds=window
    )
    taken.append(place)
    if used > settings.BERTH_LOGIN_FAILURES:
        for earlier in taken[:-1]:
            _give_back(earlier)  # refused unseen: it spends nothing of the address's budget
        raise Throttled(
            f"too many failed sign-ins for this account; try again in {_in_words(retry)}", retry_after=retry
        )
    return SignInAttempt(taken=tuple(taken))


def sign_in_succeeded(attempt: SignInAttempt) -> None:
    """A right password: the attempt's places go back, so successful sign-ins never count."""
    for taken in attempt.taken:
        _give_back(taken)


def token_creation_take(*, user, remote_addr: str | None) -> None:
    """Count one new API token for the user and their address; Throttled past BERTH_TOKEN_CREATIONS_PER_HOUR."""
    limit = settings.BERTH_TOKEN_CREATIONS_PER_HOUR
    subjects = [("token-create-account", str(user.pk))]
    if remote_addr:
        subjects.append(("token-create-address", remote_addr))
    for kind, subject in subjects:
        _, used, retry = _take(kind, subject, limit=limit, seconds=3600)
        if used > limit:
            raise Throttled(
                f"too many API tokens created in the last hour (at most {limit}); try again in {_in_words(retry)}",
                retry_after=retry,
            )

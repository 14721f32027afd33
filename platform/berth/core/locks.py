"""The app lock: one roll-out (or reconcile, or image collection) of an app at a time, across workers and the
watcher, held in Redis.

(The database has its own serialisation of one app's writers, `apps.services.app_row_lock`: that one lasts a
transaction, this one a whole roll-out.)
"""

import logging
import threading

import redis
from django.conf import settings

from berth.core.redis import redis_client

logger = logging.getLogger(__name__)

LOCK_TTL = 30  # a dead worker's app lock expires this soon; a live one renews it (see HeldAppLock)


class AppBusy(RuntimeError):
    """Another roll-out of this app holds its lock."""


def app_lock_key(app_name: str) -> str:
    return f"berth:lock:app:{app_name}"


def app_lock(app_name: str, timeout: int | None = None) -> redis.lock.Lock:
    """The app lock for a short job (a reconcile, an image collection): it expires after `timeout` seconds."""
    return redis_client().lock(
        app_lock_key(app_name),
        timeout=timeout or settings.BERTH_DEPLOY_TIMEOUT,
        blocking_timeout=settings.BERTH_DEPLOY_TIMEOUT,
    )


def app_lock_held(app_name: str) -> bool:
    return bool(redis_client().exists(app_lock_key(app_name)))


class HeldAppLock:
    """The app lock for a long roll-out: a short TTL renewed from a thread while the roll-out runs.

    A worker killed mid-deploy stops renewing, so its lock expires within LOCK_TTL instead of blocking the app's next
    deploy for BERTH_DEPLOY_TIMEOUT, and the sweep can tell a dead deploy (no lock) from a slow one (lock held).
    Entering raises `busy` (AppBusy unless the caller names its own error) when the lock stays taken.
    """

    def __init__(self, app_name: str, *, busy: type[Exception] = AppBusy):
        # thread_local=False: the renewing thread must see the token the acquiring thread got (by default redis-py
        # keeps it per thread, every renewal failed and the lock expired LOCK_TTL into any deploy)
        self.lock = redis_client().lock(
            app_lock_key(app_name),
            timeout=LOCK_TTL,
            blocking_timeout=settings.BERTH_DEPLOY_TIMEOUT,
            thread_local=False,
        )
        self._busy = busy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lock-{app_name}", daemon=True)

    def __enter__(self) -> "HeldAppLock":
        if not self.lock.acquire():
            raise self._busy("another deploy of this app is still running; try again when it ends")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.lock.release()
        except redis.exceptions.LockError:
            pass  # expired meanwhile (Redis restarted): nothing to release

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_TTL / 3):
            try:
                self.lock.extend(LOCK_TTL, replace_ttl=True)
            except redis.exceptions.LockNotOwnedError:
                self._take_back()
            except Exception:  # noqa: BLE001 - whatever went wrong, keep trying while the deploy runs
                logger.warning("could not renew the app lock %s", self.lock.name, exc_info=True)

    def _take_back(self) -> None:
        """The key is gone (Redis restarted without its data): set it again, with this deploy's token, unless
        another holder took it meanwhile. Left gone, the sweep would take this running deploy for a dead one
        (no lock) and fail it, and a second deploy of the app could start beside it."""
        token = self.lock.local.token
        if token is not None and self.lock.redis.set(self.lock.name, token, nx=True, px=int(LOCK_TTL * 1000)):
            logger.warning("the app lock %s was gone (Redis restarted?); taken back", self.lock.name)
        else:
            logger.warning("the app lock %s is now held by another; this deploy goes on", self.lock.name)

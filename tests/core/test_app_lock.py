"""The per-app deploy lock against the real Redis: renewed while its deploy runs, gone soon after its holder dies."""

import secrets
import threading
import time

import pytest
from berth.core import locks
from berth.core.locks import AppBusy, HeldAppLock, app_lock_key
from berth.core.redis import redis_client


@pytest.fixture
def app_name(settings):
    name = f"t-lock-{secrets.token_hex(4)}"
    yield name
    redis_client().delete(app_lock_key(name))


@pytest.fixture
def short_ttl(monkeypatch, settings):
    monkeypatch.setattr(locks, "LOCK_TTL", 1.5)
    settings.BERTH_DEPLOY_TIMEOUT = 0.5  # how long a second deploy waits for the lock


def test_a_held_lock_is_renewed_past_its_ttl_and_keeps_a_second_deploy_out(app_name, short_ttl):
    with HeldAppLock(app_name):
        time.sleep(4)  # more than twice the TTL: only renewals keep it
        assert redis_client().pttl(app_lock_key(app_name)) > 0
        with pytest.raises(AppBusy, match="another deploy of this app is still running"):
            with HeldAppLock(app_name):
                pass
    assert not redis_client().exists(app_lock_key(app_name))
    with HeldAppLock(app_name):  # released: the next deploy gets it at once
        pass


def test_a_lock_taken_in_one_thread_is_released_in_the_same_deploy_even_if_renewed_from_another(
    app_name, short_ttl
):
    held = HeldAppLock(app_name)
    entered = threading.Event()

    def deploy():
        with held:
            entered.set()
            time.sleep(2)

    thread = threading.Thread(target=deploy)
    thread.start()
    assert entered.wait(5)
    thread.join(10)
    assert not redis_client().exists(app_lock_key(app_name))


def test_a_holder_that_stops_renewing_loses_the_lock_within_its_ttl(app_name, short_ttl):
    held = HeldAppLock(app_name)
    held.__enter__()
    held._stop.set()  # what a killed worker looks like from Redis: no more renewals, no release
    held._thread.join(5)
    time.sleep(2)
    assert not redis_client().exists(app_lock_key(app_name))


def test_a_lock_lost_with_redis_data_is_taken_back_by_its_running_deploy(app_name, short_ttl):
    key = app_lock_key(app_name)
    with HeldAppLock(app_name) as held:
        token = redis_client().get(key)
        redis_client().delete(key)  # what a Redis restarted without its data looks like to the deploy
        time.sleep(1.5)  # a renewal interval (TTL / 3) and more
        assert redis_client().get(key) == token  # this deploy's again, not a stranger's
        assert redis_client().pttl(key) > 0
        with pytest.raises(AppBusy):
            with HeldAppLock(app_name):
                pass
        assert held.lock.owned()
    assert not redis_client().exists(key)  # released as usual


def test_a_lock_taken_by_another_meanwhile_is_left_to_it(app_name, short_ttl):
    key = app_lock_key(app_name)
    with HeldAppLock(app_name):
        redis_client().set(key, b"another-deploy", px=10_000)  # the key lost, then taken by someone else
        time.sleep(1.5)
        assert redis_client().get(key) == b"another-deploy"

"""The cache (berth.config.cache): Django makes a cache object for each request context, and each of Django's own
Redis caches opened connections of its own; Berth's share one pool per process. Against the real Redis; the
connections counted are this process's own (redis-py's pools), not the server's, which other tests share."""

from django.conf import settings
from django.core.cache import CacheHandler
from django.core.cache.backends.redis import RedisCache


def _connections(caches) -> tuple[int, int]:
    """(how many connection pools, how many connections they opened) behind `caches`, after a set and a get each."""
    for number, cache in enumerate(caches):
        cache.set(f"test:shared-pool:{number}", number, 30)
        assert cache.get(f"test:shared-pool:{number}") == number
        cache.delete(f"test:shared-pool:{number}")
    pools = {id(pool): pool for cache in caches for pool in cache._cache._pools.values()}
    return len(pools), sum(pool._created_connections for pool in pools.values())


def test_the_cache_objects_of_many_requests_share_one_connection_pool():
    caches = [CacheHandler().create_connection("default") for _ in range(20)]  # as 20 requests' contexts make
    pools, opened = _connections(caches[:1])  # the process's pool, and what earlier tests opened in it
    # one request at a time: no connection more for the other 19
    assert _connections(caches) == (1, opened) and pools == 1


def test_djangos_own_redis_cache_opens_a_pool_for_each_object():
    """What the test above guards against, on Django's class: so the test above can fail."""
    url = settings.CACHES["default"]["LOCATION"]
    assert _connections([RedisCache(url, {"KEY_PREFIX": "berth"}) for _ in range(5)]) == (5, 5)

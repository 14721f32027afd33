"""The cache backend of every Berth process: Django's Redis cache, with one client (so one set of connection pools)
per process and set of servers.

Django makes a cache object for each request context (under ASGI each request has its own: asgiref's Local), and
each of Django's RedisCache objects makes its own client and connection pools: every request that read its
session connected to Redis anew (py-spy of a web worker under the apps page: the connect and its handshake were 7 %
of the page's CPU). redis-py's pools are thread-safe, make a new connection for one that broke (a Redis restart),
and start afresh in a forked child."""

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            if key not in _clients:
                _clients[key] = self._class(self._servers, **self._options)
            return _clients[key]

"""Berth's Redis clients: `redis_client()` for synchronous code (workers, the watcher, the log shipper, views),
`async_redis_client()` for the ASGI side (WebSocket consumers, streaming views).

One client (one connection pool) per Redis URL and process, safe to share between threads; redis-py's pool
notices a fork and reconnects in the child. Its retries ride out a short blip (a Redis restart) instead of failing
a build, a deploy or a log line.
"""

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=2, base=0.1), 8),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        )
    return client


def async_redis_client(*, socket_timeout: float | None = None) -> aioredis.Redis:
    """A new asyncio client: its pool belongs to the event loop that uses it, so it is not shared; close it
    (`await client.aclose()`) when the consumer or response that made it ends."""
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=socket_timeout)

"""The one Redis client factory of Berth's synchronous code (workers, the watcher, the log shipper, views).

One client (one connection pool) per Redis URL and process, safe to share between threads; redis-py's pool
notices a fork and reconnects in the child. Its retries ride out a short blip (a Redis restart) instead of failing
a build, a deploy or a log line.
"""

import redis
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

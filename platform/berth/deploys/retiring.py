"""Retirements in progress: the replaced releases' services a worker removes in a thread of its own once the new
release is live (berth.deploys.rollout), noted in Redis from start to end. The sweep finishes what a killed worker
left (berth.deploys.sweeps); the worker's pool autoscaler (berth.config.autoscaler) keeps its processes while one is
noted, since that thread lives in one of them.

It imports no model: the worker's autoscaler (berth.config) reads it whenever Celery loads that, apps ready or not."""

import time
from datetime import timedelta

import redis

from berth.core.redis import redis_client

# a sorted set of "<app>:<live version>" scored by when the retirement started; its thread removes the entry
RETIRING_KEY = "berth:deploys:retiring"
# older entries are the sweep's: their thread is gone (a killed worker) or stuck
RETIRE_GRACE = timedelta(seconds=60)


def retirements_pending() -> bool:
    """Whether a retirement started less than RETIRE_GRACE ago is still running (in some worker's thread). False
    when Redis cannot say: a pool then shrinks as it would have."""
    try:
        return bool(redis_client().zcount(RETIRING_KEY, time.time() - RETIRE_GRACE.total_seconds(), "+inf"))
    except redis.RedisError:
        return False

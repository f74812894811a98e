"""The one synchronous Redis client of a process (locks, live sequence numbers, readiness)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


def redis_key(*parts: str) -> str:
    """A key under this deployment's prefix, so tests and stacks never share keys."""
    return ":".join((settings.REDIS_KEY_PREFIX, *parts))

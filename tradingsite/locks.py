"""Single-flight locks for periodic tasks that must never overlap (the executor tick above all).

A run takes the lock with an expiry; while it works it calls ``renew()`` so a long run keeps
the lock and a crashed one loses it after ``ttl_seconds``. A run that finds the lock taken is
skipped and counted, never queued behind the running one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.lock import Lock

from tradingsite.redisconn import redis_client, redis_key


@dataclass
class SingleFlight:
    name: str
    acquired: bool
    _lock: Lock | None

    def renew(self) -> None:
        """Reset the expiry to the full ttl; raises LockNotOwnedError if the lock was lost."""
        if self._lock is None:
            raise RuntimeError(f"single-flight {self.name!r} was not acquired")
        self._lock.reacquire()


def lock_held(name: str) -> bool:
    """Whether some run holds the single-flight lock ``name`` now."""
    return bool(redis_client().exists(redis_key("lock", name)))


def skipped_count(name: str) -> int:
    value = redis_client().get(redis_key("lock-skipped", name))
    return int(value) if value is not None else 0


@contextmanager
def single_flight(
    name: str, *, ttl_seconds: float, client: redis.Redis | None = None
) -> Iterator[SingleFlight]:
    """Hold the lock ``name`` for the block, or yield ``acquired=False`` (and count a skip)."""
    conn = client or redis_client()
    lock = conn.lock(redis_key("lock", name), timeout=ttl_seconds, blocking=False)
    if not lock.acquire(blocking=False):
        conn.incr(redis_key("lock-skipped", name))
        yield SingleFlight(name=name, acquired=False, _lock=None)
        return
    try:
        yield SingleFlight(name=name, acquired=True, _lock=lock)
    finally:
        # If the lock expired under a run that did not renew in time, another run may hold
        # it now and must keep it: releasing then fails with LockNotOwnedError, ignored.
        with contextlib.suppress(redis.exceptions.LockNotOwnedError):
            lock.release()

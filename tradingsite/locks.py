"""Single-flight locks for periodic tasks that must never overlap (the executor tick above all).

A run takes the lock with an expiry; while it works it calls ``renew()`` so a long run keeps
the lock and a crashed one loses it after ``ttl_seconds``. A run that finds the lock taken is
skipped and counted, never queued behind the running one.

The lock's value names its holder (host, PID namespace, process id). A run that finds the lock
held by a process of its own machine and PID namespace that no longer exists (a worker killed
mid-run, then restarted, or its neighbour) takes the lock over at once instead of waiting out
the expiry; a holder elsewhere, or one it cannot see, keeps the lock until it expires.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.lock import Lock

from tradingsite.redisconn import redis_client, redis_key

logger = logging.getLogger(__name__)

# Deletes the lock only while it still holds the dead holder's token (never a new holder's).
_DELETE_IF_VALUE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


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


def _pid_namespace() -> str:
    """This process's PID namespace ("" where it cannot be read: then no holder is judged)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _holder() -> str:
    return f"{socket.gethostname()}|{_pid_namespace()}|{os.getpid()}"


def _pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs here (a zombie counts as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def holder_dead(token: bytes | str | None) -> bool:
    """Whether the lock value ``token`` names a process of this machine and PID namespace
    that no longer exists. Anything else (another host, another namespace, an old-style or
    unreadable token, a live process) is not judged dead."""
    if token is None:
        return False
    text = token.decode(errors="replace") if isinstance(token, bytes) else token
    parts = text.split("|")
    if len(parts) != 4:
        return False
    host, namespace, pid, _ = parts
    if host != socket.gethostname() or not namespace or namespace != _pid_namespace():
        return False
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    return _pid_gone(int(pid))


def _take_over_from_dead(conn: redis.Redis, key: str, name: str) -> bool:
    """Delete the lock ``key`` if its holder is dead here; True when it was deleted."""
    token = conn.get(key)
    if not isinstance(token, bytes | str) or not holder_dead(token):
        return False
    if not conn.eval(_DELETE_IF_VALUE, 1, key, token):
        return False
    logger.warning("single-flight %r: its holder (%s) is dead; lock taken over", name, token)
    return True


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
    key = redis_key("lock", name)
    lock = conn.lock(key, timeout=ttl_seconds, blocking=False)
    token = f"{_holder()}|{uuid.uuid4().hex}"
    acquired = lock.acquire(blocking=False, token=token)
    if not acquired and _take_over_from_dead(conn, key, name):
        acquired = lock.acquire(blocking=False, token=token)
    if not acquired:
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

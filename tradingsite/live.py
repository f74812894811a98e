"""Live pushes to open dashboard pages over the channel layer.

Channels delivers at most once and drops messages for clients over capacity, so every push
carries a sequence number from one Redis counter per group: a page that sees a gap asks for a
fresh snapshot instead of drifting. Pushes are sent only after the surrounding transaction
commits, so a page never shows a change that was rolled back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from tradingsite.redisconn import redis_client, redis_key
from tradingsite.replaydb import replay_active

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


def live_sequence(*, group: str = DASHBOARD_GROUP) -> int:
    """The sequence number of the last push to ``group`` (0 before the first)."""
    value = redis_client().get(redis_key("live-seq", group))
    return int(value) if value is not None else 0


def live_push(*, event: str, data: dict[str, Any], group: str = DASHBOARD_GROUP) -> None:
    """Push ``event`` once the transaction commits.

    ``event`` is ``"<app>.<what>"`` (e.g. ``"doctor.heartbeat"``); the dashboard consumer has a
    handler of the same name (``doctor_heartbeat``) for each event it forwards. Nothing is
    pushed from a replay's database (``tradingsite.replaydb``): a replay is not live news.
    """
    if replay_active() is not None:
        return
    transaction.on_commit(lambda: _send(event=event, data=data, group=group))


class _PushLoop:
    """One event loop per process, in a daemon thread, that every push runs on.

    channels-redis keeps its connections per event loop: a fresh loop per push (what
    ``async_to_sync`` does from a plain thread) connects to Redis anew every time, which
    costs milliseconds per push. A forked child (a Celery worker) starts its own loop.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, work: Callable[[], Awaitable[None]], *, timeout: float = 10.0) -> None:
        with self._guard:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="live-push", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            loop = self._loop

        async def call() -> None:
            await work()

        asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=timeout)


_push_loop = _PushLoop()


def _send(*, event: str, data: dict[str, Any], group: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        seq = int(redis_client().incr(redis_key("live-seq", group)))
        message = {"type": event, "seq": seq, "data": data}
        _push_loop.run(lambda: layer.group_send(group, message))
    except Exception:
        # A push is a convenience for open pages; the database already holds the truth and
        # a page re-syncs on the next sequence gap, so a push failure must not fail the caller.
        logger.exception("live push %s to %s failed", event, group)

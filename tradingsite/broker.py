"""The Redis broker transport the workers use: kombu's, surviving a Redis restart.

When Redis goes away, Celery drops the lost connection and connects anew. Messages delivered
on the lost connection may still be acknowledged afterwards (an ``acks_late`` task that was
running finishes) or restored when the old channel closes; kombu's Redis QoS then builds a
client from the dropped connection and raises AttributeError, which Celery does not count as
a connection error, so the worker stopped for good ("Unrecoverable error") when Redis came
back. The Redis restart drill (tests/drills/drill_redis_restart.py) showed both cases.

Here a channel whose connection is gone leaves those messages to the broker instead: if Redis
kept them they are still in its unacknowledged index and are delivered again once the
visibility timeout passes (our ``acks_late`` tasks are idempotent); if Redis restarted empty
they are gone with it either way. A warning says so.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def _connection_gone(self) -> bool:
        transport = getattr(self.channel, "connection", None)
        return transport is None or getattr(transport, "client", None) is None

    def _left_to_broker(self, what: str, count: int) -> None:
        logger.warning(
            "broker connection lost: %s %d message(s) left to the broker (redelivered after "
            "the visibility timeout if it kept them)",
            what,
            count,
        )

    def ack(self, delivery_tag: Any) -> None:
        if self._connection_gone():
            self._left_to_broker("acknowledging", 1)
            virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._connection_gone():
            self._left_to_broker("rejecting", 1)
            virtual.QoS.ack(self, delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)

    def restore_unacked(self, client: Any = None) -> None:
        if client is None and self._connection_gone():
            delivered = self._delivered
            self._left_to_broker("restoring", len(delivered) if delivered else 0)
            if delivered:
                delivered.clear()
            return
        super().restore_unacked(client)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel

"""The dashboard's websocket: forwards live pushes to logged-in pages, with sequence numbers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis import RedisError

from doctor.selectors import heartbeats_latest
from doctor.services import heartbeat_as_dict
from tradingsite.live import DASHBOARD_GROUP, live_sequence
from tradingsite.metrics import (
    WEBSOCKET_SEEN_INTERVAL_SECONDS,
    websocket_client_gone,
    websocket_client_seen,
)

logger = logging.getLogger(__name__)

# Application close code for "not logged in" (4000-4999 are free for applications).
CLOSE_UNAUTHENTICATED = 4401


def dashboard_snapshot() -> dict[str, Any]:
    """The state a page re-syncs to: read the sequence first, so pushes after it are newer."""
    seq = live_sequence(group=DASHBOARD_GROUP)
    heartbeats = [heartbeat_as_dict(heartbeat) for heartbeat in heartbeats_latest()]
    return {"event": "snapshot", "seq": seq, "data": {"heartbeats": heartbeats}}


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    _counted: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()
        await sync_to_async(websocket_client_seen, thread_sensitive=False)(
            connection_id=self.channel_name
        )
        self._counted = asyncio.create_task(self._stay_counted())
        await self.send_json(await database_sync_to_async(dashboard_snapshot)())

    async def disconnect(self, code: int) -> None:
        if self._counted is not None:
            self._counted.cancel()
        await sync_to_async(websocket_client_gone, thread_sensitive=False)(
            connection_id=self.channel_name
        )
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def _stay_counted(self) -> None:
        """Refresh this socket's entry in the open-dashboards count (``/metrics``) while it is
        open: an entry that stops being refreshed (its process died) ages out of the count."""
        while True:
            await asyncio.sleep(WEBSOCKET_SEEN_INTERVAL_SECONDS)
            try:
                await sync_to_async(websocket_client_seen, thread_sensitive=False)(
                    connection_id=self.channel_name
                )
            except RedisError:
                logger.warning("dashboard socket not counted: Redis is unavailable", exc_info=True)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # A page that saw a sequence gap asks for the whole state again.
        if isinstance(content, dict) and content.get("action") == "resync":
            await self.send_json(await database_sync_to_async(dashboard_snapshot)())

    async def forward(self, message: dict[str, Any]) -> None:
        await self.send_json(
            {"event": message["type"], "seq": message["seq"], "data": message["data"]}
        )

    # One handler per live event (Channels maps "doctor.heartbeat" to doctor_heartbeat).
    doctor_heartbeat = forward
    doctor_snapshot = forward
    risk_state = forward
    risk_kill_switch = forward
    risk_autotune = forward
    routing_position = forward
    routing_nav = forward
    routing_fill = forward
    routing_health = forward
    routing_replay = forward
    mlinsights_prediction = forward
    mlinsights_insights = forward

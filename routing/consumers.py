"""The dashboard's websocket: forwards live pushes to logged-in pages, with sequence numbers."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from doctor.selectors import heartbeats_latest
from doctor.services import heartbeat_as_dict
from tradingsite.live import DASHBOARD_GROUP, live_sequence

# Application close code for "not logged in" (4000-4999 are free for applications).
CLOSE_UNAUTHENTICATED = 4401


def dashboard_snapshot() -> dict[str, Any]:
    """The state a page re-syncs to: read the sequence first, so pushes after it are newer."""
    seq = live_sequence(group=DASHBOARD_GROUP)
    heartbeats = [heartbeat_as_dict(heartbeat) for heartbeat in heartbeats_latest()]
    return {"event": "snapshot", "seq": seq, "data": {"heartbeats": heartbeats}}


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(dashboard_snapshot)())

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

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
    risk_state = forward
    risk_kill_switch = forward
    risk_autotune = forward
    routing_position = forward
    routing_nav = forward
    routing_fill = forward
    routing_health = forward
    mlinsights_prediction = forward
    mlinsights_insights = forward

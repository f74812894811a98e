"""Readings and clients the drills share (imported after Django is set up)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect
from websockets.typing import Origin

from doctor.models import Heartbeat
from tests.drills.stack import Stack, wait_until


def heartbeats_since(component: str, since: datetime) -> int:
    return Heartbeat.objects.filter(component=component, created_at__gt=since).count()


def first_heartbeat_after(component: str, since: datetime) -> datetime | None:
    row = (
        Heartbeat.objects.filter(component=component, created_at__gt=since)
        .order_by("created_at")
        .first()
    )
    return row.created_at if row is not None else None


def ticks_running(*, count: int = 3, timeout: float = 120.0) -> datetime:
    """Wait until the executor has ticked ``count`` times from now; the moment it started."""
    since = timezone.now()
    wait_until(
        lambda: heartbeats_since("executor", since) >= count,
        timeout=timeout,
        what=f"{count} executor ticks",
    )
    return since


def viewer_cookie(username: str = "drill-viewer") -> str:
    user, _ = User.objects.get_or_create(username=username)
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@dataclass
class DashboardWatcher:
    """A dashboard page's websocket, kept open as live.js keeps it: reconnect when closed.

    Records every message with the time it arrived, and every reconnection."""

    stack: Stack
    cookie: str
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> DashboardWatcher:
        self._thread = threading.Thread(target=self._loop, name="dashboard-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        host = urlsplit(self.stack.web_url).netloc
        while not self._stop.is_set():
            try:
                with connect(
                    f"ws://{host}/ws/dashboard/",
                    additional_headers={"Cookie": self.cookie},
                    origin=Origin(self.stack.web_url),
                    open_timeout=10,
                ) as socket:
                    self.connects.append(time.time())
                    while not self._stop.is_set():
                        try:
                            raw = socket.recv(timeout=1)
                        except TimeoutError:
                            continue
                        self.messages.append((time.time(), json.loads(raw)))
            except (WebSocketException, OSError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                self._stop.wait(1.0)  # live.js waits before reconnecting too

    def events_after(self, moment: float, event: str | None = None) -> list[dict[str, Any]]:
        return [
            message
            for at, message in list(self.messages)
            if at > moment and (event is None or message.get("event") == event)
        ]

    def first_after(self, moment: float, event: str | None = None) -> float | None:
        for at, message in list(self.messages):
            if at > moment and (event is None or message.get("event") == event):
                return at
        return None

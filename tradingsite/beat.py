"""The beat scheduler: django-celery-beat's DatabaseScheduler that also leaves heartbeats.

Beat runs no tasks, so a "beat" heartbeat written from its own loop is the direct proof that
the one process sending every schedule is alive (worker heartbeats only prove it indirectly).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from django.db import DatabaseError
from django_celery_beat.schedulers import DatabaseScheduler

from doctor.services import heartbeat_record

logger = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):  # type: ignore[misc]
    heartbeat_every_seconds = 10.0
    _last_heartbeat = float("-inf")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_every_seconds:
            self._last_heartbeat = now
            try:
                heartbeat_record(
                    component="beat", hostname=socket.gethostname(), metrics={"pid": os.getpid()}
                )
            except DatabaseError:
                # A missed heartbeat is what the doctor looks for; sending schedules matters more.
                logger.exception("beat heartbeat not recorded")
        interval: float = super().tick(*args, **kwargs)
        return interval

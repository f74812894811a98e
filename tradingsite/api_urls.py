"""Every endpoint under /api/v1/, one line per app's routes."""

from __future__ import annotations

from django.urls import path

from doctor.api import HeartbeatLatestList

urlpatterns = [
    path("heartbeats/latest/", HeartbeatLatestList.as_view(), name="api-heartbeats-latest"),
]

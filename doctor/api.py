from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics, serializers

from doctor.models import Heartbeat
from doctor.selectors import heartbeats_latest


class HeartbeatSerializer(serializers.ModelSerializer[Heartbeat]):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Heartbeat
        fields = ["component", "hostname", "at", "metrics"]


class HeartbeatLatestList(generics.ListAPIView[Heartbeat]):
    """The newest heartbeat of every component."""

    serializer_class = HeartbeatSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Heartbeat]:
        return heartbeats_latest()

"""JSON for the Doctor tab, the Router Health overlay and API clients (``/api/v1/doctor/``,
``/api/v1/heartbeats/latest/``); read-only, login (session or token) required."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.urls import path
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from doctor.dashboard import EMPTY_HINT, doctor_latest, incidents_open
from doctor.models import DoctorSnapshot, Heartbeat, Incident
from doctor.selectors import heartbeats_latest
from doctor.snapshots import HISTORY_HOURS_DEFAULT, HISTORY_HOURS_MAX, confidence_series
from tradingsite.api import NewestFirst, task_accepted


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


class ConfidenceQuerySerializer(serializers.Serializer[Any]):
    hours = serializers.IntegerField(
        required=False,
        default=HISTORY_HOURS_DEFAULT,
        min_value=1,
        max_value=HISTORY_HOURS_MAX,
        help_text="How far back (hours).",
    )


class _ReadOnly(APIView):
    """Read-only: the default ``RolePermission`` lets viewers and operators in."""


class DoctorLatest(_ReadOnly):
    """The latest cached doctor snapshot: overall status and confidence, every check (status,
    detail, latency, confidence) and its age; 404 (saying how to get one) before the first."""

    @extend_schema(operation_id="doctor_latest", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        latest = doctor_latest()
        if latest is None:
            return Response({"detail": EMPTY_HINT}, status=status.HTTP_404_NOT_FOUND)
        return Response(latest)


class DoctorConfidence(_ReadOnly):
    """The doctor confidence time series (oldest first, at most 1500 points)."""

    @extend_schema(
        operation_id="doctor_confidence",
        parameters=[ConfidenceQuerySerializer],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        query = ConfidenceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        hours = query.validated_data["hours"]
        return Response({"hours": hours, "points": confidence_series(hours=hours)})


class DoctorIncidents(_ReadOnly):
    """Open incidents, newest first."""

    @extend_schema(operation_id="doctor_incidents_open", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(incidents_open())


class DoctorRun(APIView):
    """Run every check now and cache the snapshot (as the schedule does; failing checks open
    incidents). 202 with the task id to poll at /api/v1/tasks/<id>/; its result names the
    snapshot. Operator role."""

    @extend_schema(operation_id="doctor_run", request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        from doctor.tasks import doctor_run_task

        result = doctor_run_task.delay()
        return task_accepted(result.id)


class DoctorSnapshotSerializer(serializers.ModelSerializer[DoctorSnapshot]):
    class Meta:
        model = DoctorSnapshot
        fields = ["id", "taken_at", "status", "confidence", "duration_ms", "trigger", "checks"]


class IncidentSerializer(serializers.ModelSerializer[Incident]):
    class Meta:
        model = Incident
        fields = [
            "id",
            "component",
            "code",
            "severity",
            "message",
            "occurrences",
            "opened_at",
            "last_seen_at",
            "resolved_at",
        ]


class IncidentFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    open = django_filters.BooleanFilter(
        field_name="resolved_at", lookup_expr="isnull", help_text="true: only open incidents."
    )

    class Meta:
        model = Incident
        fields = ["component", "severity", "open"]


class SnapshotList(generics.ListAPIView[DoctorSnapshot]):
    """Every cached doctor snapshot, newest first (cursor pages; kept 30 days)."""

    serializer_class = DoctorSnapshotSerializer
    pagination_class = NewestFirst
    queryset = DoctorSnapshot.objects.all()


class IncidentList(generics.ListAPIView[Incident]):
    """Every incident, newest first (cursor pages), filtered by component, severity, open."""

    serializer_class = IncidentSerializer
    pagination_class = NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = IncidentFilter
    queryset = Incident.objects.all()


urlpatterns = [
    path("snapshots/", SnapshotList.as_view(), name="api-doctor-snapshots"),
    path("incidents/all/", IncidentList.as_view(), name="api-doctor-incidents-all"),
    path("run/", DoctorRun.as_view(), name="api-doctor-run"),
    path("latest/", DoctorLatest.as_view(), name="api-doctor-latest"),
    path("confidence/", DoctorConfidence.as_view(), name="api-doctor-confidence"),
    path("incidents/", DoctorIncidents.as_view(), name="api-doctor-incidents"),
]

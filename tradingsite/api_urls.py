"""Every endpoint under /api/v1/, one line per app's routes."""

from __future__ import annotations

from django.urls import include, path

from doctor.api import HeartbeatLatestList
from routing import api as routing_api
from routing import api_records as routing_records
from routing import api_replay as routing_replay
from tradingsite.api import TaskStatus

urlpatterns = [
    path("tasks/<str:task_id>/", TaskStatus.as_view(), name="api-task-status"),
    path("risk/kill-switch/", routing_api.KillSwitch.as_view(), name="api-kill-switch"),
    path("risk/unhalt/", routing_api.Unhalt.as_view(), name="api-unhalt"),
    path("flatten/", routing_api.Flatten.as_view(), name="api-flatten"),
    path("signals/", routing_api.SignalSubmit.as_view(), name="api-signals"),
    path("orders/", routing_records.OrderList.as_view(), name="api-orders"),
    path("orders/export.csv", routing_records.OrderExport.as_view(), name="api-orders-export"),
    path("fills/", routing_records.FillList.as_view(), name="api-fills"),
    path("fills/export.csv", routing_records.FillExport.as_view(), name="api-fills-export"),
    path("replays/", routing_replay.ReplayList.as_view(), name="api-replays"),
    path("replays/<int:run_id>/", routing_replay.ReplayDetail.as_view(), name="api-replay"),
    path("replays/<int:run_id>/stop/", routing_replay.ReplayStop.as_view(), name="api-replay-stop"),
    path(
        "replays/<int:run_id>/resume/",
        routing_replay.ReplayResume.as_view(),
        name="api-replay-resume",
    ),
    path(
        "replays/<int:run_id>/divergence/",
        routing_replay.ReplayDivergence.as_view(),
        name="api-replay-divergence",
    ),
    path(
        "replays/<int:run_id>/divergence.csv",
        routing_replay.ReplayDivergenceExport.as_view(),
        name="api-replay-divergence-csv",
    ),
    path("heartbeats/latest/", HeartbeatLatestList.as_view(), name="api-heartbeats-latest"),
    path(
        "router-health/<str:window>/",
        routing_api.RouterHealthTables.as_view(),
        name="api-router-health",
    ),
    path(
        "router-health/<str:window>/curves/",
        routing_api.RouterHealthCurves.as_view(),
        name="api-router-health-curves",
    ),
    path("nav/curve/", routing_api.NavCurve.as_view(), name="api-nav-curve"),
    path("positions/", routing_api.Positions.as_view(), name="api-positions"),
    path("fills/recent/", routing_api.RecentFills.as_view(), name="api-fills-recent"),
    path("status/", routing_api.TradingStatus.as_view(), name="api-status"),
    path("ticks/", routing_api.LastTicks.as_view(), name="api-ticks"),
    path("", include("risk.api")),
    path("ml/", include("mlinsights.api")),
    path("doctor/", include("doctor.api")),
]

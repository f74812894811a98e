from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from routing import views as routing_views
from tradingsite.metrics import metrics_view
from tradingsite.views import (
    TABS,
    DashboardTabView,
    ReplayDivergenceView,
    ThrottledLoginView,
    healthz,
    readyz,
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # No trailing slash: Prometheus' default metrics_path, answered without a redirect.
    path("metrics", metrics_view, name="metrics"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tradingsite.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("controls/kill-switch/", routing_views.kill_switch, name="control-kill-switch"),
    path("controls/flatten/", routing_views.flatten, name="control-flatten"),
    path("controls/replays/", routing_views.replay_start_control, name="control-replay-start"),
    path(
        "controls/replays/<int:run_id>/<str:action>/",
        routing_views.replay_control,
        name="control-replay",
    ),
    path(
        "replays/<int:run_id>/divergence/",
        ReplayDivergenceView.as_view(),
        name="replay-divergence",
    ),
    path("", DashboardTabView.as_view(tab="overview"), name="overview"),
    *[
        path(f"{slug}/", DashboardTabView.as_view(tab=slug), name=slug)
        for slug, _ in TABS
        if slug != "overview"
    ],
]

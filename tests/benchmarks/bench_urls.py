"""The project's URLs plus the dashboard benchmark's baseline: a trivial login-required view
(the session and user lookups every dashboard page pays, and nothing else)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_required
def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.user.get_username()}")


urlpatterns = [
    path("bench/trivial/", trivial),
    path("", include("tradingsite.urls")),
]

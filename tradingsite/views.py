from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.generic import TemplateView

from doctor.dashboard import doctor_context
from mlinsights.dashboard import ml_insights_context
from risk.dashboard import risk_tab_context
from routing.dashboard import overview_context
from routing.models import ReplayRun
from routing.replay_dashboard import (
    MAX_ID,
    REPLAY_FORM_SESSION_KEY,
    divergence_context,
    replays_context,
    router_health_page,
)
from tradingsite.accounts import (
    is_operator,
    login_failure_record,
    login_failures_clear,
    login_locked_for,
)
from tradingsite.health import readiness

TABS = (
    ("overview", "Overview"),
    ("router-health", "Router Health"),
    ("replays", "Replays"),
    ("risk", "Risk"),
    ("ml-insights", "ML Insights"),
    ("doctor", "Doctor"),
)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    probes = readiness()
    ready = all(probe.ok for probe in probes)
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": [asdict(p) for p in probes]},
        status=200 if ready else 503,
    )


class ThrottledLoginView(auth_views.LoginView):
    """Django's login, refusing to check passwords for a while after repeated failures of one
    username or from one address (429 with Retry-After, said on the page)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        address = request.META.get("REMOTE_ADDR", "")
        wait = login_locked_for(username=username, address=address)
        if wait:
            # The password is not even looked at: a fresh, unbound form and the reason.
            message = f"Too many failed logins: try again in {max(1, -(-wait // 60))} minute(s)."
            form = self.get_form_class()(request=self.request)
            context = self.get_context_data(form=form, locked_out=message)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        login_failure_record(
            username=self.request.POST.get("username", ""),
            address=self.request.META.get("REMOTE_ADDR", ""),
        )
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        login_failures_clear(username=form.get_user().get_username())
        return super().form_valid(form)


class DashboardTabView(LoginRequiredMixin, TemplateView):
    tab = ""

    def get_template_names(self) -> list[str]:
        return [f"dashboard/{self.tab}.html"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = {
            **super().get_context_data(**kwargs),
            "tabs": TABS,
            "active_tab": self.tab,
        }
        if self.tab == "overview":
            context.update(overview_context(), is_operator=is_operator(self.request.user))
        elif self.tab == "router-health":
            context.update(
                router_health_page(
                    self.request.GET.get("window", ""), self.request.GET.get("run", "").strip()
                )
            )
        elif self.tab == "replays":
            refused = self.request.session.pop(REPLAY_FORM_SESSION_KEY, None)
            context.update(replays_context(refused), is_operator=is_operator(self.request.user))
        elif self.tab == "risk":
            context.update(risk_tab_context())
        elif self.tab == "ml-insights":
            context.update(ml_insights_context(self.request.GET.get("version", "")))
        elif self.tab == "doctor":
            context.update(doctor_context())
        return context


class ReplayDivergenceView(LoginRequiredMixin, TemplateView):
    """A done replay against live trading: the PnL gap, its causes and the trades compared."""

    template_name = "dashboard/replay-divergence.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        run_id = int(self.kwargs["run_id"])
        if not 0 < run_id <= MAX_ID:
            raise Http404("no such replay")
        run = get_object_or_404(ReplayRun, pk=run_id)
        return {
            **super().get_context_data(**kwargs),
            "tabs": TABS,
            "active_tab": "replays",
            **divergence_context(run),
        }

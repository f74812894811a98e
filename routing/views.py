"""The operators' controls on the Overview: thin views over ``routing.dashboard``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from routing.dashboard import operator_flatten, operator_kill_switch
from tradingsite.accounts import is_operator


def _confirmed(request: HttpRequest) -> str | None:
    """The reason, when the form was confirmed and gave one; else None (and a message)."""
    reason = request.POST.get("reason", "").strip()
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the confirmation box to go ahead.")
        return None
    if not reason:
        messages.error(request, "A reason is required.")
        return None
    return reason


@login_required
@require_POST
def kill_switch(request: HttpRequest) -> HttpResponse:
    if not is_operator(request.user):
        return HttpResponseForbidden("Only operators may switch the kill switch.")
    on = request.POST.get("on")
    if on not in {"1", "0"}:
        messages.error(request, "Say whether to switch the kill switch on or off.")
        return redirect("overview")
    reason = _confirmed(request)
    if reason is not None:
        try:
            messages.success(
                request, operator_kill_switch(user=request.user, on=on == "1", reason=reason)
            )
        except (ValueError, LookupError) as error:
            messages.error(request, str(error))
    return redirect("overview")


@login_required
@require_POST
def flatten(request: HttpRequest) -> HttpResponse:
    if not is_operator(request.user):
        return HttpResponseForbidden("Only operators may flatten.")
    reason = _confirmed(request)
    if reason is not None:
        try:
            operator_flatten(user=request.user, reason=reason)
            messages.success(
                request, "Flatten queued: open entries are cancelled and every position closed."
            )
        except (ValueError, LookupError) as error:
            messages.error(request, str(error))
        except OperationalError as error:
            messages.error(
                request,
                f"Flatten was NOT queued: the broker is unreachable ({error}). Use "
                "`manage.py flatten --reason ...` on the server.",
            )
    return redirect("overview")

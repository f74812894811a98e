"""The operators' controls on the Overview and the Replays tab: thin views over
``routing.dashboard`` and ``routing.replay_dashboard``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from routing.api_replay import ReplayStartSerializer
from routing.dashboard import operator_flatten, operator_kill_switch
from routing.models import ReplayRun
from routing.replay import ReplayInvalid
from routing.replay_dashboard import (
    MAX_ID,
    REPLAY_FORM_FIELDS,
    REPLAY_FORM_SESSION_KEY,
    ReplayNotQueued,
    operator_replay_delete,
    operator_replay_resume,
    operator_replay_start,
    operator_replay_stop,
)
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


def _utc(text: str) -> str:
    """A time from the form's datetime-local input (no zone) is UTC, as the form says."""
    text = text.strip()
    try:
        parsed = parse_datetime(text)
    except ValueError:
        return text  # the serializer says what is wrong with it
    return f"{text}Z" if parsed is not None and timezone.is_naive(parsed) else text


def _replay_started(request: HttpRequest, posted: dict[str, str]) -> list[str]:
    """Start the replay the form asks for; what is wrong with it, else nothing."""
    given = ReplayStartSerializer(
        data={
            "start": _utc(posted["start"]),
            "end": _utc(posted["end"]),
            "symbols": posted["symbols"],
            "initial_nav": posted["initial_nav"] or None,
            "slippage_bps": posted["slippage_bps"] or None,
        }
    )
    if not given.is_valid():
        return [f"{field}: {' '.join(map(str, errors))}" for field, errors in given.errors.items()]
    try:
        run = operator_replay_start(user=request.user, **given.validated_data)
    except ReplayInvalid as error:
        return [f"{error.field}: {error.message}"]
    except ReplayNotQueued as error:
        messages.error(request, str(error))
        return []
    messages.success(request, f"Replay {run.pk} queued: {run.bars_total} bars to replay.")
    return []


@login_required
@require_POST
def replay_start_control(request: HttpRequest) -> HttpResponse:
    if not is_operator(request.user):
        return HttpResponseForbidden("Only operators may start replays.")
    posted = {name: request.POST.get(name, "").strip() for name in REPLAY_FORM_FIELDS}
    problems = _replay_started(request, posted)
    for problem in problems:
        messages.error(request, f"Replay not started. {problem}")
    if problems:
        request.session[REPLAY_FORM_SESSION_KEY] = posted  # the form keeps what was typed
    return redirect("replays")


CONTROLS = {
    "stop": (operator_replay_stop, "Replay {id} stops after its current chunk."),
    "resume": (operator_replay_resume, "Replay {id} queued again: it goes on from its cursor."),
    "delete": (operator_replay_delete, "Replay {id} deleted."),
}


@login_required
@require_POST
def replay_control(request: HttpRequest, run_id: int, action: str) -> HttpResponse:
    if action not in CONTROLS or not 0 < run_id <= MAX_ID:
        raise Http404("no such control")
    if not is_operator(request.user):
        return HttpResponseForbidden("Only operators may stop, resume or delete replays.")
    run = get_object_or_404(ReplayRun, pk=run_id)
    control, done = CONTROLS[action]
    try:
        control(user=request.user, run=run)
        messages.success(request, done.format(id=run_id))
    except ReplayInvalid as error:
        messages.error(request, f"Replay {run_id}: {error.message}")
    except ReplayNotQueued as error:
        messages.error(request, str(error))
    return redirect("replays")

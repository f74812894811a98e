from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from risk.models import AutotuneEvent, RiskLimit, RiskSnapshot, RiskState
from risk.services import kill_switch_set, risk_halt, risk_snapshot_restore, risk_unhalt
from tradingsite.accounts import is_operator
from tradingsite.admin_actions import Checkbox, OperatorAdminMixin, ReadOnlyAdmin, confirmed_action


def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


@confirmed_action(
    name="kill_switch_on",
    title="Switch the kill switch ON",
    explanation="No new order is sent until it is switched off (reduce-only orders still are).",
)
def kill_switch_on(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    kill_switch_set(on=True, actor=_actor(request), reason=reason)
    return "Kill switch is ON."


@confirmed_action(
    name="kill_switch_off",
    title="Switch the kill switch OFF",
    explanation="Trading resumes within the limits (unless the account is halted).",
)
def kill_switch_off(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    kill_switch_set(on=False, actor=_actor(request), reason=reason)
    return "Kill switch is OFF."


@confirmed_action(
    name="flatten",
    title="Flatten: cancel open entries and close every position",
    explanation=(
        "Queued on the executor; it runs between ticks. Protective stops are replaced by "
        "the closing orders. New entries keep coming unless the kill switch is on."
    ),
)
def flatten(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    from routing.dashboard import operator_flatten  # routing builds on risk, not the reverse

    task_id = operator_flatten(user=request.user, reason=reason, via="admin")
    return f"Flatten queued (task {task_id})."


@admin.register(RiskLimit)
class RiskLimitAdmin(OperatorAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]
    list_display = [
        "__str__",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        "max_leverage",
        "max_daily_loss",
        "max_drawdown",
        "kill_switch",
        "updated_at",
    ]
    # The kill switch changes only through its actions, which ask for a reason.
    readonly_fields = ["kill_switch", "updated_at"]
    actions = [kill_switch_on, kill_switch_off, flatten]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The global row is never deleted: without it nothing can be checked.
        return is_operator(request.user) and (obj is None or obj.symbol != "")


@confirmed_action(
    name="halt",
    title="Halt trading",
    explanation="Open entry orders will be cancelled; only a person can un-halt.",
)
def halt(request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]) -> str:
    risk_halt(reason=reason, actor=_actor(request))
    return "Trading is halted."


@confirmed_action(
    name="unhalt",
    title="Un-halt trading",
    explanation="Trading resumes. If a loss limit caused the halt, it trips again unless you "
    "accept the loss (the peak and the day then restart from now).",
    checkbox=Checkbox("rebase", "Accept the current loss (restart peak and day from now)"),
)
def unhalt(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    risk_unhalt(actor=_actor(request), note=reason, rebase=flags.get("rebase", False))
    return "Trading is un-halted."


@admin.register(RiskState)
class RiskStateAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["__str__", "nav", "halted", "halt_reason", "size_multiplier", "updated_at"]
    actions = [halt, unhalt, kill_switch_on, kill_switch_off]


@confirmed_action(
    name="restore_snapshot",
    title="Restore this snapshot",
    explanation="The live risk state is replaced by the selected snapshot (select exactly one).",
)
def restore_snapshot(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    if queryset.count() != 1:
        raise ValueError("Select exactly one snapshot to restore.")
    snapshot = queryset.get()
    risk_snapshot_restore(snapshot_id=snapshot.pk, actor=_actor(request), note=reason)
    return f"Snapshot #{snapshot.pk} restored."


@admin.register(RiskSnapshot)
class RiskSnapshotAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["__str__", "reason", "actor", "note", "created_at"]
    list_filter = ["reason"]
    actions = [restore_snapshot]


@admin.register(AutotuneEvent)
class AutotuneEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "old_multiplier", "new_multiplier", "reason"]

"""Admin actions that change state: operators only, confirmed on a page, a reason required."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tradingsite.accounts import is_operator, is_viewer


@dataclass(frozen=True)
class Checkbox:
    name: str
    label: str


Perform = Callable[[HttpRequest, QuerySet[Any], str, dict[str, bool]], str]


def confirmed_action(
    *, name: str, title: str, explanation: str, checkbox: Checkbox | None = None
) -> Callable[
    [Perform], Callable[[admin.ModelAdmin[Any], HttpRequest, QuerySet[Any]], HttpResponse | None]
]:
    """Wrap ``perform(request, queryset, reason, flags) -> message`` as a confirmed admin action."""

    def decorate(
        perform: Perform,
    ) -> Callable[[admin.ModelAdmin[Any], HttpRequest, QuerySet[Any]], HttpResponse | None]:
        def action(
            modeladmin: admin.ModelAdmin[Model], request: HttpRequest, queryset: QuerySet[Any]
        ) -> HttpResponse | None:
            if not is_operator(request.user):
                modeladmin.message_user(request, "Only operators may do this.", messages.ERROR)
                return None
            reason = request.POST.get("reason", "").strip()
            if request.POST.get("confirm") == "yes" and reason:
                flags = {checkbox.name: bool(request.POST.get(checkbox.name))} if checkbox else {}
                try:
                    done = perform(request, queryset, reason, flags)
                except (ValueError, LookupError, RuntimeError) as error:
                    modeladmin.message_user(request, str(error), messages.ERROR)
                    return None
                modeladmin.message_user(request, done, messages.SUCCESS)
                return None
            context = {
                **modeladmin.admin_site.each_context(request),
                "title": title,
                "explanation": explanation,
                "queryset": queryset,
                "action": name,
                "checkbox": checkbox,
                "error": "A reason is required." if request.POST.get("confirm") else "",
            }
            return TemplateResponse(request, "admin/confirm_with_reason.html", context)

        action.__name__ = name
        action.short_description = title  # type: ignore[attr-defined]
        action.allowed_permissions = ("operate",)  # type: ignore[attr-defined]
        return action

    return decorate


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Records written only by services: inspectable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OperatorAdminMixin:
    """Viewers see; operators (and superusers) change and run actions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_viewer(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_viewer(request.user)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

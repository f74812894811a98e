"""The API's policy, named in REST_FRAMEWORK settings: the roles and the one error format.

Roles (SPEC §11, the foundation's groups): reading needs the ``viewer`` role (or
``operator``), every write needs ``operator``. Errors have one shape: ``{"detail": "..."}``,
plus the field messages of a 400 (``{"field": ["message"]}``, DRF's own form): 401/403 for
who you are, 404 for what does not exist, 409 when the request conflicts with the state (e.g.
un-halting an account that is not halted), 429 with ``Retry-After`` when throttled.

Kept apart from the views (``tradingsite.api``): DRF imports this module while it loads its
own views module, so nothing here may import ``rest_framework.views`` at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import permissions, status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from tradingsite.accounts import is_operator, is_viewer

if TYPE_CHECKING:
    from rest_framework.views import APIView


class RolePermission(permissions.BasePermission):
    """Read with the viewer (or operator) role; write with the operator role."""

    message = "This needs the viewer role to read and the operator role to change anything."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return is_viewer(request.user)
        return is_operator(request.user)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the services' own refusals in the same shape."""
    from rest_framework.views import exception_handler

    from risk.services import RiskStateConflict, RiskStateUnavailable
    from tradingsite.guard import ProdWriteRefused

    if isinstance(exc, RiskStateConflict | RiskStateUnavailable):
        exc = Conflict(str(exc))
    elif isinstance(exc, ProdWriteRefused):
        return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
    return exception_handler(exc, context)

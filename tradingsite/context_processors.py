"""Template context every dashboard page needs."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from routing.dashboard import trading_status


def trading(request: HttpRequest) -> dict[str, Any]:
    """The halt/kill-switch banner's state, for logged-in pages."""
    if not request.user.is_authenticated:
        return {}
    return {"trading_status": trading_status()}

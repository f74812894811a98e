"""ASGI entry point: HTTP through Django, websockets through Channels (authenticated only)."""

from __future__ import annotations

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

from tradingsite.config import exit_on_config_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")

with exit_on_config_error():
    # Build the Django app first: it sets Django up before any consumer module imports models.
    django_asgi_app = get_asgi_application()

from routing.websockets import websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

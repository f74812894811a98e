"""tradingsite: the project package (settings, urls, asgi, the Celery app, cross-cutting pieces)."""

from __future__ import annotations

from tradingsite.celery import app as celery_app

__all__ = ["celery_app"]

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Built-in signal sources are added after every migrate, never overwriting an
        # operator's switch or weight.
        post_migrate.connect(_signal_sources_after_migrate, sender=self)


def _signal_sources_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    from routing.signal_services import signal_sources_sync

    signal_sources_sync()

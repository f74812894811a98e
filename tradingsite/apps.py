from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TradingsiteConfig(AppConfig):
    name = "tradingsite"
    verbose_name = "Platform"

    def ready(self) -> None:
        from tradingsite.schedules import schedules_sync_after_migrate

        # Schedules are declared in code and added after every migrate, so a deployment
        # creates the missing ones without touching those an operator has edited.
        post_migrate.connect(schedules_sync_after_migrate, sender=self)

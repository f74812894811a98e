from __future__ import annotations

from django.apps import AppConfig


class MlinsightsConfig(AppConfig):
    name = "mlinsights"
    verbose_name = "ML insights"

"""The Celery app every worker, the ML worker and beat load (``celery -A tradingsite``)."""

from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from tradingsite.config import exit_on_config_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
# Every redis:// (and redis+socket://) broker URL gets our transport: kombu's Redis transport
# that survives a Redis restart (see tradingsite.broker).
TRANSPORT_ALIASES["redis"] = "tradingsite.broker:Transport"


app = Celery("tradingsite")
# Settings are read here, at import, so a bad variable stops the worker with one line
# instead of failing inside the first task.
with exit_on_config_error():
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_url  # noqa: B018 - forces the settings module to load now
app.autodiscover_tasks()

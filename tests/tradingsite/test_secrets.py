"""Secrets come from the environment and never come back out: no page, admin list, API
answer, command output or log line carries one (issue 8, item 4).

Every setting that holds a secret is given a distinctive value, then everything a person or a
script can read is fetched — every dashboard tab, every admin changelist, every GET endpoint
under /api/v1/, /metrics, ``doctor --json`` — with the logs captured at DEBUG, and each text is
searched for every secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.tradingsite.test_api_access import READS
from tradingsite.views import TABS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

SECRETS = {
    "BINANCE_API_KEY": "sekrit-binance-key-7Q2",
    "BINANCE_API_SECRET": "sekrit-binance-secret-9X4",
    "ALERT_TELEGRAM_BOT_TOKEN": "123:sekrit-telegram-token-5Z1",
    "METRICS_TOKEN": "sekrit-metrics-token-3W8",
    "ALERT_WEBHOOK_URL": "https://hooks.example.invalid/sekrit-webhook-path-6V3",
    "ALERT_SLACK_WEBHOOK_URL": "https://hooks.example.invalid/services/sekrit-slack-2K9",
}


@pytest.fixture
def secrets_set(settings: Any) -> dict[str, str]:
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    settings.ALERT_TELEGRAM_CHAT_ID = "-100"
    settings.ALERT_TELEGRAM_API_URL = "https://api.example.invalid"
    return {**SECRETS, "SECRET_KEY": settings.SECRET_KEY}


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


@pytest.fixture
def superuser(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_superuser("root", password="a-long-secret-0")


def test_no_page_admin_list_or_api_answer_shows_a_secret(
    secrets_set: dict[str, str], superuser: User, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # API tokens are secrets too (api_token shows one once, never again).
    secrets_set = {**secrets_set, "an API token": Token.objects.create(user=superuser).key}
    caplog.set_level(logging.DEBUG)
    client.force_login(superuser)
    fetched: dict[str, str] = {}
    for slug, _ in TABS:
        fetched[slug] = client.get("/" if slug == "overview" else f"/{slug}/").content.decode()
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        fetched[url] = client.get(url).content.decode()
        first = model._default_manager.first()
        if first is not None:
            change = reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[first.pk]
            )
            fetched[change] = client.get(change).content.decode()
    for path in READS:
        answer = client.get(path)
        streamed = getattr(answer, "streaming_content", None)  # the CSV exports stream
        body = b"".join(streamed) if streamed is not None else answer.content
        fetched[path] = body.decode()
    metrics = Client(HTTP_AUTHORIZATION=f"Bearer {SECRETS['METRICS_TOKEN']}").get("/metrics")
    assert metrics.status_code == 200
    fetched["/metrics"] = metrics.content.decode()
    out = StringIO()
    # Failing checks exit non-zero; the output is what matters here.
    with contextlib.suppress(Exception):
        call_command("doctor", "--json", stdout=out)
    fetched["doctor --json"] = out.getvalue()
    assert json.loads(fetched["doctor --json"])["checks"]

    assert len(fetched) > 40
    for where, text in fetched.items():
        assert not leaked(text, secrets_set), f"{where} shows {leaked(text, secrets_set)}"
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert not leaked(logs, secrets_set), f"the logs show {leaked(logs, secrets_set)}"


def test_an_alert_that_fails_records_and_logs_no_secret(
    secrets_set: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook and Telegram URLs hold secrets; delivering to them fails here (nothing
    listens at the invalid host) and the stored errors and logs must not repeat them."""
    from doctor.alerts import alert_deliver
    from doctor.models import Alert, Incident
    from doctor.services import incident_open

    caplog.set_level(logging.DEBUG)
    incident = incident_open(
        component="risk", code="halted", severity=Incident.Severity.CRITICAL, message="halted"
    )
    for alert in Alert.objects.filter(incident=incident):
        alert_deliver(alert.pk, backoff=lambda _attempt: 0.0)
    errors = "\n".join(Alert.objects.values_list("last_error", flat=True))
    assert errors.strip()  # they did fail, with a reason
    assert not leaked(errors, secrets_set), leaked(errors, secrets_set)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert not leaked(logs, secrets_set), leaked(logs, secrets_set)


def test_every_model_is_in_the_admin() -> None:
    """Every record is inspectable (history tables are shown through their model's history)."""
    from django.apps import apps

    missing = [
        f"{model._meta.app_label}.{model.__name__}"
        for app in ("tradingsite", "risk", "routing", "mlinsights", "doctor")
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry and not model.__name__.startswith("Historical")
    ]
    assert missing == []

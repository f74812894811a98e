"""Schemathesis against the generated OpenAPI schema: every /api/v1/ operation called with
generated inputs (bounded examples) as an operator, and no input may make the API fail (5xx).

The schema is the one ``/api/schema/`` serves, read through the WSGI app in-process, and the
calls go through the same app: the real views, serializers, permissions and database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

# The project serves ASGI (daphne); the same Django app through WSGI is all the calls need.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).include(
    path_regex="^/api/v1/"
)


@pytest.fixture
def wsgi_keeps_the_test_connection() -> Iterator[None]:
    """Called through WSGI, Django closes the database connection at the end of each request;
    here that is the test's transaction, so (as Django's test client does) not."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def operator_token(operator_user: User) -> str:
    key: str = Token.objects.get_or_create(user=operator_user)[0].key
    return key


@pytest.mark.django_db
@pytest.mark.usefixtures("global_limits", "wsgi_keeps_the_test_connection")
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_input_makes_the_api_fail(case: Any, operator_token: str) -> None:
    response = case.call(headers={"Authorization": f"Token {operator_token}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )

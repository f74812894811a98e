from __future__ import annotations

import json
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest
from django.test import Client

from tests.conftest import Process, child_env, daphne_command, free_port, wait_for
from tradingsite.redisconn import redis_client


@pytest.mark.django_db
def test_healthz_answers_without_login(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_and_redis_reachable(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {check["name"]: check["ok"] for check in body["checks"]} == {
        "database": True,
        "redis": True,
    }


@pytest.mark.django_db
def test_readyz_answers_503_when_redis_is_unreachable(client: Client, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    redis_client.cache_clear()
    try:
        response = client.get("/readyz")
    finally:
        redis_client.cache_clear()
    assert response.status_code == 503
    checks = {check["name"]: check for check in response.json()["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "Connection" in checks["redis"]["detail"]


def test_readyz_answers_503_from_a_server_whose_database_is_unreachable() -> None:
    port = free_port()
    process = Process(
        "daphne-no-database",
        daphne_command(port),
        {**child_env(), "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"},
    )
    try:

        def answer() -> tuple[int, dict[str, Any]] | None:
            process.assert_running()
            try:
                with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
                    return response.status, json.load(response)
            except HTTPError as error:
                return error.code, json.load(error)
            except URLError:
                return None

        status, body = wait_for(answer, timeout=60, what="daphne to answer /readyz")
    finally:
        process.stop()
    assert status == 503
    checks = {check["name"]: check["ok"] for check in body["checks"]}
    assert checks == {"database": False, "redis": True}

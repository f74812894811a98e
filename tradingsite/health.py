"""Readiness: can this process reach the database and Redis right now?"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection

from tradingsite.redisconn import redis_client


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    latency_ms: float


def _probe(name: str, check: object) -> Probe:
    started = time.perf_counter()
    try:
        check()  # type: ignore[operator]
    except Exception as error:
        return Probe(name, False, f"{type(error).__name__}: {error}", _ms(started))
    return Probe(name, True, "ok", _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    redis_client().ping()


def readiness() -> list[Probe]:
    return [_probe("database", _database), _probe("redis", _redis)]

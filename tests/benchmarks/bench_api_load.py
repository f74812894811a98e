"""Benchmark: an API list endpoint under concurrent load, with locust, on the real ASGI server.

Issue 10. Not a test: ``make bench`` calls ``run()`` with Django set up (PostgreSQL;
``python -m tests.benchmarks.bench_api_load`` runs it alone).

One daphne process (as the Procfile's ``web``) on loopback, on the benchmark's database and
Redis. ``ROWS`` fills (and their orders) of one symbol are stored, ``USERS`` viewer users are
made, each given an API token by the product's ``api_token`` command. Locust runs as a library
in a child process (``tests.benchmarks.locust_load``: its gevent monkey-patching breaks
Django's and psycopg's process if imported there) and sends
``GET /api/v1/fills/?symbol=...`` (the newest page of 100, as a client polling for new fills
asks for it) with ``Authorization: Token ...``, the tokens taken in turn.

1. Load: ``USERS`` users (default 50, ``BENCH_LOAD_USERS``) for ``SECONDS`` (default 30,
   ``BENCH_LOAD_SECONDS``), all started in the first second, each waiting 1 to 3 s after
   every answer (a client polling about every 2 s: some 25 requests/s offered in all).
2. Baseline, in the same run on the same server: one user sending the same request again as
   soon as the answer is in (no wait), for ``BASELINE_SECONDS``: the endpoint's own time with
   nothing else in flight.

p50, p95 (over every request of the phase, locust's response times), requests/s and failures
(any answer but a 200 with a page, or a connection error). Goal: no failure and p95 at most
250 ms under the load. The API's user throttle (600 requests a minute per user) is why the
tokens are taken in turn: each user stays far below it in both phases. Everything written
(rows, users, tokens) is deleted at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.run import env_int

ROOT = Path(__file__).resolve().parents[2]
ROWS = 10_000
SYMBOL = "BENCHLOADUSDT"
DEFAULT_USERS = 50
DEFAULT_SECONDS = 30
BASELINE_SECONDS = 10
WAIT = (1.0, 3.0)
GOAL_P95 = 0.250
USER_PREFIX = "bench-load-"
PATH = f"/api/v1/fills/?symbol={SYMBOL}"


def _tokens(count: int) -> list[str]:
    """``count`` viewer users, each with a token made by the ``api_token`` command."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    viewer = Group.objects.get_or_create(name="viewer")[0]
    tokens = []
    for n in range(count):
        user = User.objects.create_user(f"{USER_PREFIX}{n}")
        user.groups.add(viewer)
        out = StringIO()
        call_command("api_token", user=user.username, stdout=out, stderr=StringIO())
        tokens.append(out.getvalue().strip())
    return tokens


def _locust(host: str, tokens: list[str], *, users: int, seconds: int, wait: Any) -> Any:
    config = {
        "host": f"http://{host}",
        "path": PATH,
        "tokens": tokens,
        "users": users,
        "seconds": seconds,
        "wait": list(wait),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.locust_load"],
        cwd=ROOT,
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"locust exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class _Connections:
    """The peak number of connections to the benchmark's database (pg_stat_activity), sampled
    twice a second from a thread of its own while the block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self.limit = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _count(self) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            row = cursor.fetchone()
            cursor.execute("SHOW max_connections")
            limit = cursor.fetchone()
        self.limit = int(limit[0]) if limit else 0
        return int(row[0]) if row else 0

    def _sample(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                self.peak = max(self.peak, self._count())
                self._stop.wait(0.5)
        finally:
            connection.close()

    def __enter__(self) -> _Connections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Phase:
    def __init__(self, result: dict[str, Any]) -> None:
        times = np.array(result["times_ms"], dtype=np.float64) / 1000
        self.requests = len(times)
        self.p50 = float(np.percentile(times, 50)) if len(times) else float("nan")
        self.p95 = float(np.percentile(times, 95)) if len(times) else float("nan")
        self.rate = self.requests / float(result["seconds"])
        statuses: dict[str, int] = result["statuses"]
        self.ok = statuses.get("200", 0)
        self.failures = sum(result["failures"].values())
        self.why = sorted(result["failures"].items(), key=lambda item: -item[1])[:3]

    def failures_text(self) -> str:
        if not self.failures:
            return "0 failures"
        why = "; ".join(f"{count} x {text}" for text, count in self.why)
        return f"{self.failures} failures ({why})"


def run() -> list[dict[str, Any]]:
    from django.contrib.auth.models import User

    from tests.benchmarks.bench_api_lists import fills_delete, fills_store
    from tests.benchmarks.bench_dashboard import _daphne_process, daphne_errors

    users = env_int("BENCH_LOAD_USERS", DEFAULT_USERS)
    seconds = env_int("BENCH_LOAD_SECONDS", DEFAULT_SECONDS)
    User.objects.filter(username__startswith=USER_PREFIX).delete()
    fills_delete(SYMBOL)
    try:
        fills_store(
            symbol=SYMBOL, rows=ROWS, prefix="bench-load-", start=datetime(2026, 2, 1, tzinfo=UTC)
        )
        tokens = _tokens(users)
        with _daphne_process() as (host, server):
            _locust(host, tokens[:1], users=1, seconds=2, wait=(0, 0))  # warm-up
            with _Connections() as alone_connections:
                alone = _Phase(
                    _locust(host, tokens, users=1, seconds=BASELINE_SECONDS, wait=(0, 0))
                )
            with _Connections() as load_connections:
                load = _Phase(_locust(host, tokens, users=users, seconds=seconds, wait=WAIT))
            errors = daphne_errors(server.log_path)
    finally:
        User.objects.filter(username__startswith=USER_PREFIX).delete()  # and their tokens
        fills_delete(SYMBOL)
    met = load.failures == 0 and load.p95 <= GOAL_P95
    offered = users / (sum(WAIT) / 2)
    causes = []
    if load.failures:
        causes.append(load.failures_text() + (f"; daphne logged: {errors}" if errors else ""))
    if load.p95 > GOAL_P95:
        causes.append(
            f"p95 {load.p95 * 1e3:.0f} ms over {GOAL_P95 * 1e3:.0f} ms: {users} users waiting "
            f"{WAIT[0]:g}-{WAIT[1]:g} s would send up to about {offered:.0f} requests/s, one "
            f"daphne answered {load.rate:.1f}/s (one user alone, back to back: "
            f"{alone.rate:.1f}/s), so requests queued"
        )
    return [
        {
            "name": (
                f"GET /api/v1/fills/ (newest page of 100, token auth) under load: {users} "
                f"locust users for {seconds} s, each waiting {WAIT[0]:g}-{WAIT[1]:g} s between "
                f"requests, one daphne on loopback; p95 of {load.requests:,} requests (p50 "
                f"{load.p50 * 1e3:.1f} ms, {load.rate:.1f} requests/s, "
                f"{load.failures_text()})"
            ),
            "seconds": load.p95,
            "baseline_name": (
                f"the same request from one locust user, back to back, {BASELINE_SECONDS} s, "
                f"p95 of {alone.requests:,} (p50 {alone.p50 * 1e3:.1f} ms, "
                f"{alone.rate:.1f} requests/s, {alone.failures_text()})"
            ),
            "baseline_seconds": alone.p95,
            "ratio": load.p95 / alone.p95,
            "goal": f"0 failures, p95 ≤ {GOAL_P95 * 1e3:.0f} ms",
            "met": met,
            "note": (
                f"API under load: locust {_locust_version()} (FastHttpUser, in a child "
                f"process on the same {os.cpu_count()} cores as the server), {ROWS:,} fills "
                f"of one symbol stored, {users} viewer tokens from the api_token command taken "
                f"in turn (the user throttle allows 600 requests a minute per user). Load: "
                f"{load.requests:,} requests in {seconds} s, {load.rate:.1f}/s, p50 "
                f"{load.p50 * 1e3:.1f} ms, p95 {load.p95 * 1e3:.1f} ms, {load.ok:,} answered "
                f"200, {load.failures_text()}. One user alone: {alone.rate:.1f} requests/s, "
                f"p50 {alone.p50 * 1e3:.1f} ms, p95 {alone.p95 * 1e3:.1f} ms. Connections "
                "to the benchmark database (pg_stat_activity, peak of samples twice a second): "
                f"{alone_connections.peak} with one user, {load_connections.peak} under the "
                f"load (the PostgreSQL server allows {load_connections.limit} in all, to every "
                "database on it)." + (f" Goal not met: {'; '.join(causes)}." if causes else "")
            ),
        }
    ]


def _locust_version() -> str:
    from importlib.metadata import version

    return version("locust")


if __name__ == "__main__":
    from tests.benchmarks.run import _setup_django

    _setup_django()
    for row in run():
        print(row)

"""The shared request-weight budget (routing/weights.py) against the session's real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
from django.conf import settings

from routing.weights import KEY_TTL_MS, WeightBudget, used_weight_from_headers
from tradingsite.redisconn import redis_client, redis_key

# 2025-03-14 12:00:00 UTC, the start of a minute window
MINUTE_START_MS = 1_741_953_600_000
WINDOW = MINUTE_START_MS // 60_000


@pytest.fixture
def budget_name() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    client = redis_client()
    for key in client.scan_iter(match=redis_key("weight", name, "*")):
        client.delete(key)


def test_it_reserves_while_there_is_room_then_says_how_long_to_wait(budget_name: str) -> None:
    # given a 100-weight limit at 80 % headroom
    budget = WeightBudget(100, 0.8, name=budget_name)
    now_ms = MINUTE_START_MS + 45_500

    # when / then
    assert budget.reserve(50, now_ms=now_ms) == 0.0
    assert budget.reserve(30, now_ms=now_ms) == 0.0
    assert budget.reserve(1, now_ms=now_ms) == pytest.approx(14.5)  # to the next minute
    assert budget.used(now_ms=now_ms) == 80  # the refused request reserved nothing


def test_a_request_that_fits_exactly_is_allowed(budget_name: str) -> None:
    budget = WeightBudget(2400, name=budget_name)
    assert budget.cap == 1920
    assert budget.reserve(1920, now_ms=MINUTE_START_MS) == 0.0
    assert budget.reserve(1, now_ms=MINUTE_START_MS) > 0


def test_the_next_window_starts_fresh(budget_name: str) -> None:
    budget = WeightBudget(10, 1.0, name=budget_name)
    assert budget.reserve(10, now_ms=MINUTE_START_MS + 59_999) == 0.0
    assert budget.reserve(1, now_ms=MINUTE_START_MS + 59_999) == pytest.approx(0.001)
    assert budget.reserve(10, now_ms=MINUTE_START_MS + 60_000) == 0.0


def test_the_window_key_is_prefixed_and_expires(budget_name: str) -> None:
    budget = WeightBudget(100, name=budget_name)
    budget.reserve(5, now_ms=MINUTE_START_MS)
    key = redis_key("weight", budget_name, str(WINDOW))
    assert key.startswith(settings.REDIS_KEY_PREFIX)
    assert int(redis_client().get(key) or 0) == 5
    assert 60_000 < redis_client().pttl(key) <= KEY_TTL_MS


def test_observe_raises_the_count_to_the_venues(budget_name: str) -> None:
    budget = WeightBudget(100, 0.8, name=budget_name)
    budget.reserve(10, now_ms=MINUTE_START_MS)

    # another tool on the same IP spent weight we did not see
    assert budget.observe(75, now_ms=MINUTE_START_MS + 1000) == 75

    assert budget.used(now_ms=MINUTE_START_MS) == 75
    assert budget.reserve(5, now_ms=MINUTE_START_MS + 1000) == 0.0
    assert budget.reserve(1, now_ms=MINUTE_START_MS + 1000) > 0
    assert redis_client().pttl(redis_key("weight", budget_name, str(WINDOW))) > 60_000


def test_observe_never_lowers_the_count(budget_name: str) -> None:
    # our reservations in flight are ahead of what the venue has counted so far
    budget = WeightBudget(100, 0.8, name=budget_name)
    budget.reserve(40, now_ms=MINUTE_START_MS)
    assert budget.observe(12, now_ms=MINUTE_START_MS) == 40
    assert budget.used(now_ms=MINUTE_START_MS) == 40


def test_observe_counts_in_its_own_window(budget_name: str) -> None:
    budget = WeightBudget(100, 0.8, name=budget_name)
    budget.observe(80, now_ms=MINUTE_START_MS + 59_000)
    assert budget.reserve(80, now_ms=MINUTE_START_MS + 60_000) == 0.0


def test_budgets_with_different_names_do_not_share_a_count(budget_name: str) -> None:
    other_name = f"{budget_name}-other"
    try:
        first = WeightBudget(10, 1.0, name=budget_name)
        second = WeightBudget(10, 1.0, name=other_name)
        assert first.reserve(10, now_ms=MINUTE_START_MS) == 0.0
        assert second.reserve(10, now_ms=MINUTE_START_MS) == 0.0
    finally:
        redis_client().delete(redis_key("weight", other_name, str(WINDOW)))


def test_concurrent_reservers_never_exceed_the_headroom(budget_name: str) -> None:
    # given eight workers, each with its own Redis connection, asking for far more than fits
    budget_cap = WeightBudget(1000, 0.8, name=budget_name).cap
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        connection = redis.Redis.from_url(settings.REDIS_URL)
        try:
            budget = WeightBudget(1000, 0.8, client=connection, name=budget_name)
            start.wait()
            for attempt in range(150):
                weight = 1 + (seed * 7 + attempt) % 5
                if budget.reserve(weight, now_ms=MINUTE_START_MS + 10) == 0.0:
                    with lock:
                        granted.append(weight)
        finally:
            connection.close()

    # when they all reserve at once
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then the grants never add up to more than the cap, and the budget was used, not wasted
    assert sum(granted) <= budget_cap == 800
    assert sum(granted) > budget_cap - 5
    assert WeightBudget(1000, 0.8, name=budget_name).used(now_ms=MINUTE_START_MS) == sum(granted)


# Run by each worker process of the test below: reserve as fast as possible, print the grants.
RESERVING_PROCESS = """
import sys, django
django.setup()
from routing.weights import WeightBudget
name, now_ms = sys.argv[1], int(sys.argv[2])
budget = WeightBudget(1000, 0.8, name=name)
print("ready", flush=True)
sys.stdin.readline()  # start together
granted = 0
for attempt in range(600):
    weight = 1 + attempt % 3
    if budget.reserve(weight, now_ms=now_ms) == 0.0:
        granted += weight
print(granted)
"""


def test_two_processes_reserving_at_once_never_exceed_the_headroom(budget_name: str) -> None:
    # given two worker processes (the session's settings and Redis, through the environment)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingsite.settings"}
    args = [sys.executable, "-c", RESERVING_PROCESS, budget_name, str(MINUTE_START_MS)]

    # when both ask for 1200 each against a cap of 800
    workers = [
        subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]

    # then together they were granted at most the cap
    assert all(worker.returncode == 0 for worker in workers)
    granted = [int(output.strip().splitlines()[-1]) for output in outputs]
    assert sum(granted) <= 800
    assert sum(granted) > 800 - 3
    assert WeightBudget(1000, 0.8, name=budget_name).used(now_ms=MINUTE_START_MS) == sum(granted)


@pytest.mark.parametrize(
    ("limit", "headroom", "weight", "message"),
    [
        (0, 0.8, 1, "limit_per_minute must be positive"),
        (100, 0.0, 1, "headroom must be in"),
        (100, 1.5, 1, "headroom must be in"),
        (100, 0.8, 0, "weight must be positive"),
        (100, 0.8, 81, "can never fit"),
    ],
)
def test_it_refuses_nonsense(
    budget_name: str, limit: int, headroom: float, weight: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WeightBudget(limit, headroom, name=budget_name).reserve(weight, now_ms=MINUTE_START_MS)


def test_headroom_is_applied_without_float_error(budget_name: str) -> None:
    assert WeightBudget(100, 0.29, name=budget_name).cap == 29


def test_used_weight_is_read_from_a_venue_answer() -> None:
    response = requests.Response()
    response.headers.update({"x-mbx-used-weight-1m": "1234"})
    assert used_weight_from_headers(response.headers) == 1234
    for garbage in ("", "many", "-3"):
        response.headers["X-MBX-USED-WEIGHT-1M"] = garbage
        assert used_weight_from_headers(response.headers) is None
    assert used_weight_from_headers(requests.Response().headers) is None

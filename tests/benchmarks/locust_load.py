"""Locust as a library, for ``bench_api_load`` (not a benchmark module itself).

Locust monkey-patches the standard library with gevent when it is imported (sockets, ssl,
threads); imported into a process that has Django, psycopg and asyncio loaded already, that
patching fails (a ``RecursionError`` in ``ssl``) or silently changes how they behave. So the
benchmark runs this module as a child process: ``python -m tests.benchmarks.locust_load``
reads one JSON object on standard input (tokens stay out of the process list)::

    {"host": "http://127.0.0.1:PORT", "path": "/api/v1/fills/?...", "tokens": [...],
     "users": 50, "seconds": 30, "wait": [min, max]}

runs ``users`` FastHttpUsers headless for ``seconds`` (all started within the first second),
each sending ``GET path`` with ``Authorization: Token ...`` (the tokens taken in turn, one per
request) and waiting ``wait`` seconds (uniform between min and max) after each answer, and
prints one JSON line: every request's response time (ms, as locust measures it), the status
codes, the failures and the wall-clock seconds of the run.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import Counter
from typing import Any

from locust import FastHttpUser, between, task
from locust.env import Environment


def main(config: dict[str, Any]) -> dict[str, Any]:
    tokens = itertools.cycle(config["tokens"])
    path = str(config["path"])
    times: list[float] = []
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()

    class ApiUser(FastHttpUser):
        host = str(config["host"])
        wait_time = between(*config["wait"])

        @task
        def fills(self) -> None:
            headers = {"Authorization": f"Token {next(tokens)}"}
            with self.client.get(path, headers=headers, catch_response=True) as answer:
                statuses[str(answer.status_code)] += 1
                if answer.status_code != 200:
                    answer.failure(f"HTTP {answer.status_code}")
                elif not answer.text or '"results"' not in answer.text:
                    answer.failure("no results in the answer")

    def on_request(response_time: float, exception: BaseException | None, **_: Any) -> None:
        times.append(float(response_time))
        if exception is not None:
            failures[str(exception)[:200]] += 1

    environment = Environment(user_classes=[ApiUser])
    environment.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = environment.create_local_runner()
    users = int(config["users"])
    started = time.monotonic()
    runner.start(users, spawn_rate=users)
    time.sleep(float(config["seconds"]))  # gevent's sleep (patched): the users run meanwhile
    runner.quit()
    seconds = time.monotonic() - started
    return {
        "times_ms": times,
        "statuses": dict(statuses),
        "failures": dict(failures),
        "seconds": seconds,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.read()))), flush=True)

"""Benchmark: 1 Hz live pushes fanned out to 500 dashboard websockets of the real ASGI server.

Issue 10. Not a test: ``make bench`` calls ``run()`` with Django set up
(``python -m tests.benchmarks.bench_websocket`` runs it alone).

One daphne process (as the Procfile's ``web``) on loopback, on the benchmark's database and
Redis; ``CLIENTS`` websockets (default 500, ``BENCH_WS_CLIENTS``) opened on
``/ws/dashboard/`` by one logged-in user's session, from a child process
(``tests.benchmarks.ws_clients``: asyncio and the ``websockets`` package) so the clients'
event loop does not share this process's interpreter with the publisher.

1. Once per second for ``SECONDS`` (default 30, ``BENCH_WS_SECONDS``) this process publishes a
   ``routing.nav`` update through the product's own push, ``tradingsite.live.live_push``
   (outside a transaction, so on_commit sends at once: Redis sequence number, channels-redis
   ``group_send`` to the dashboard group on the push loop). Latency: from just before the
   ``live_push`` call to the moment each client reads the message (``time.monotonic()`` in
   both processes: the machine's one CLOCK_MONOTONIC). A push a client never reads (by the
   end of a ``GRACE`` of a few seconds after the last one) is dropped.
2. Baseline, in the same run, to the same clients on the same server: a bare channels-redis
   ``group_send`` of the same message (sequence 0) to the same group once per second for
   ``BASELINE_SECONDS`` (default 15), from a long-lived event loop of this process: what the
   channel layer and daphne cost without the product's push path.

Goal: no push dropped, and p99 at most 250 ms (a quarter of the 1 s update interval, so a
page never falls behind the stream). The user, its session and the server are removed at the
end.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from tests.benchmarks.run import env_int

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CLIENTS = 500
DEFAULT_SECONDS = 30
BASELINE_SECONDS = 15
GRACE = 5.0
GOAL_P99 = 0.250
USERNAME = "bench-websocket"
LOG = ROOT / "var" / "bench-ws-clients.log"


def _line(stream: IO[str], process: subprocess.Popen[str], timeout: float, what: str) -> str:
    """One line of the clients' output; the clients are stopped if it takes over ``timeout``."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        line = stream.readline()
    finally:
        timer.cancel()
    if not line:
        raise RuntimeError(
            f"the websocket clients ended before {what} (exit {process.poll()}): "
            f"{LOG.read_text()[-2000:]}"
        )
    return line


def _publish(push: Callable[[int], None], seconds: int) -> list[float]:
    """``push(n)`` once per second on a fixed schedule; the moment each call began."""
    moments: list[float] = []
    start = time.monotonic() + 0.5
    for n in range(seconds):
        delay = start + n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        moments.append(time.monotonic())
        push(n)
    return moments


def _nav(phase: str, n: int) -> dict[str, Any]:
    """A NAV update as ``routing.books`` pushes it, tagged for the clients."""
    return {
        "at": datetime.now(UTC).isoformat(),
        "nav": f"{10_000 + n}.12345678",
        "bench": {"phase": phase, "n": n},
    }


class _Loop:
    """A long-lived event loop in a thread, for the bare group_send (channels-redis keeps its
    connections per loop, as the product's push loop does)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Any]) -> None:
        async def call() -> None:
            await make()

        asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _deliveries(
    records: list[list[Any]], phase: str, moments: list[float], clients: int
) -> tuple[list[float], int, int]:
    """Latencies of every (client, push) read, the pushes dropped, the duplicates read."""
    seen: dict[tuple[int, int], float] = {}
    duplicates = 0
    for client, tag, n, _seq, at in records:
        if tag != phase:
            continue
        key = (int(client), int(n))
        if key in seen:
            duplicates += 1
            continue
        seen[key] = float(at) - moments[int(n)]
    dropped = clients * len(moments) - len(seen)
    return list(seen.values()), dropped, duplicates


def _sequence_gaps(records: list[list[Any]], clients: int) -> int:
    """Gaps in the product pushes' sequence numbers as each client read them (a page seeing
    one asks for a fresh snapshot)."""
    by_client: dict[int, list[int]] = {n: [] for n in range(clients)}
    for client, tag, _n, seq, _at in records:
        if tag == "push":
            by_client[int(client)].append(int(seq))
    gaps = 0
    for seqs in by_client.values():
        gaps += sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    return gaps


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def _benchmark() -> list[dict[str, Any]]:
    from channels.layers import get_channel_layer
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django.test import Client

    from tests.benchmarks.bench_dashboard import _daphne_process, daphne_errors
    from tests.benchmarks.ws_clients import CONNECTING
    from tradingsite.live import DASHBOARD_GROUP, live_push

    clients = env_int("BENCH_WS_CLIENTS", DEFAULT_CLIENTS)
    seconds = env_int("BENCH_WS_SECONDS", DEFAULT_SECONDS)
    baseline_seconds = min(BASELINE_SECONDS, seconds)
    User.objects.filter(username=USERNAME).delete()
    user = User.objects.create_user(USERNAME)
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value
    layer = get_channel_layer()
    loop = _Loop()
    LOG.parent.mkdir(exist_ok=True)
    try:
        with _daphne_process() as (host, server), LOG.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.benchmarks.ws_clients",
                    f"ws://{host}/ws/dashboard/",
                    f"http://{host}",
                    str(clients),
                ],
                cwd=ROOT,
                env={**os.environ, "BENCH_WS_COOKIE": f"sessionid={session}"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            assert process.stdin is not None
            assert process.stdout is not None
            try:
                ready = json.loads(_line(process.stdout, process, 300, "all connected"))
                if ready["ready"] != clients:
                    raise RuntimeError(f"{ready['ready']} of {clients} clients connected")
                cpu = (_cpu_seconds(server.popen.pid), _cpu_seconds(process.pid))
                pushed = _publish(
                    lambda n: live_push(event="routing.nav", data=_nav("push", n)), seconds
                )
                span = time.monotonic() - pushed[0]
                server_cpu = (_cpu_seconds(server.popen.pid) - cpu[0]) / span
                clients_cpu = (_cpu_seconds(process.pid) - cpu[1]) / span
                bare = _publish(
                    lambda n: loop.run(
                        lambda: layer.group_send(
                            DASHBOARD_GROUP,
                            {"type": "routing.nav", "seq": 0, "data": _nav("bare", n)},
                        )
                    ),
                    baseline_seconds,
                )
                time.sleep(GRACE)
                process.stdin.write("stop\n")
                process.stdin.flush()
                result = json.loads(_line(process.stdout, process, 120, "its records"))
                process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            errors = daphne_errors(server.log_path)
    finally:
        loop.close()
        Session.objects.filter(session_key=session).delete()
        user.delete()
    records: list[list[Any]] = result["records"]
    latencies, dropped, duplicates = _deliveries(records, "push", pushed, clients)
    bare_latencies, bare_dropped, _ = _deliveries(records, "bare", bare, clients)
    gaps = _sequence_gaps(records, clients)
    p50, p99, worst = _ms(latencies, 50), _ms(latencies, 99), max(latencies, default=0.0)
    b50, b99 = _ms(bare_latencies, 50), _ms(bare_latencies, 99)
    met = dropped == 0 and p99 <= GOAL_P99
    causes = []
    if dropped:
        closed = ""
        if result["closed_early"]:
            closed = f" ({result['closed_early']} socket(s) closed by daphne: {errors}"
            if "Timeout reading" in errors:
                closed += (
                    "; redis-py's default socket timeout, 5 s, is as long as channels-redis's "
                    "5 s BZPOPMIN wait for the next message, so a receive that waits the full "
                    "5 s can time out instead of returning empty, and the consumer dies"
                )
            closed += ")"
        causes.append(f"{dropped} of {clients * seconds:,} pushes dropped{closed}")
    if p99 > GOAL_P99:
        busy = (
            f"daphne, at {server_cpu:.0%} of a core, waited on Redis more than it computed"
            if server_cpu < 0.6
            else f"daphne was busy ({server_cpu:.0%} of a core)"
        )
        causes.append(
            f"p99 {p99 * 1e3:.0f} ms over {GOAL_P99 * 1e3:.0f} ms (the bare group_send's "
            f"{b99 * 1e3:.0f} ms): {busy}; channels-redis's RedisChannelLayer receives one "
            "message at a time, each with its own Redis round trips (EVAL, BZPOPMIN, ZADD, "
            f"ZPOPMIN), so a push to {clients} members drains serially"
        )
    return [
        {
            "name": (
                f"1 Hz live pushes (live_push of routing.nav) to {clients} dashboard websockets "
                f"of one daphne on loopback, {seconds} s: publish -> client received, p99 of "
                f"{len(latencies):,} deliveries (p50 {p50 * 1e3:.1f} ms; {dropped} dropped)"
            ),
            "seconds": p99,
            "baseline_name": (
                f"bare channels-redis group_send of the same message to the same {clients} "
                f"websockets at 1 Hz, {baseline_seconds} s, p99 (p50 {b50 * 1e3:.1f} ms; "
                f"{bare_dropped} dropped)"
            ),
            "baseline_seconds": b99,
            "ratio": p99 / b99,
            "goal": f"0 dropped, p99 ≤ {GOAL_P99 * 1e3:.0f} ms",
            "met": met,
            "note": (
                f"websocket fan-out: {clients} clients (one session, one child process on the "
                f"same {os.cpu_count()} cores) connected in {ready['connect_seconds']:.1f} s, "
                f"{min(CONNECTING, clients)} handshakes at a time; {seconds} pushes through "
                "live_push, one a second, each read by every client: "
                f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, slowest {worst * 1e3:.1f} ms, "
                f"{dropped} dropped, {duplicates} read twice, {gaps} sequence gaps, "
                f"{result['closed_early']} sockets closed early. While pushing, daphne used "
                f"{server_cpu:.0%} of a core and the clients' process {clients_cpu:.0%}. The "
                "latency runs from the live_push call to the client's read: the Redis sequence "
                "number, the group_send of one message per member, daphne reading each from "
                "Redis and writing it to its socket, and the clients' loop reading "
                f"{clients} messages in a burst (the last of a burst waits for the others). "
                f"The bare group_send of the same message: p50 {b50 * 1e3:.1f} ms, p99 "
                f"{b99 * 1e3:.1f} ms, {bare_dropped} dropped."
                + (f" Goal not met: {'; '.join(causes)}." if causes else "")
            ),
        }
    ]


def run() -> list[dict[str, Any]]:
    from channels.layers import channel_layers

    from tests.benchmarks.bench_routing import _live_pushes

    with _live_pushes():
        channel_layers.backends.clear()  # built for the Redis of this block
        try:
            return _benchmark()
        finally:
            channel_layers.backends.clear()


if __name__ == "__main__":
    from tests.benchmarks.run import _setup_django

    _setup_django()
    for row in run():
        print(row)

"""Many dashboard websocket clients in one process, for ``bench_websocket`` (not a benchmark
module itself: ``make bench`` runs it as a child process, so its event loop does not share a
core's time with the publisher).

``python -m tests.benchmarks.ws_clients URL ORIGIN CLIENTS``: opens CLIENTS websockets to URL
(at most ``CONNECTING`` handshakes at a time) with the session cookie given in the environment
(``BENCH_WS_COOKIE``, kept out of the process list), waits for each
one's snapshot, then prints one JSON line ``{"ready": ..., "connect_seconds": ...}``. Every
message after the snapshot that carries ``data.bench`` is recorded with the moment it was read
(``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process of the machine). When a
line arrives on standard input (or it closes), the sockets are closed and one JSON line with
every record is printed: ``{"records": [[client, phase, n, seq, at], ...], "errors": [...],
"closed_early": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

CONNECTING = 25  # handshakes in flight at a time
OPEN_TIMEOUT = 60.0


class Clients:
    def __init__(self, url: str, origin: str, cookie: str) -> None:
        self.url, self.origin, self.cookie = url, origin, cookie
        self.records: list[tuple[int, str, int, int, float]] = []
        self.errors: list[str] = []
        self.closed_early = 0
        self.stopping = False

    async def open(self, index: int, gate: asyncio.Semaphore) -> ClientConnection:
        async with gate:
            ws = await connect(
                self.url,
                additional_headers={"Cookie": self.cookie},
                origin=Origin(self.origin),
                open_timeout=OPEN_TIMEOUT,
                max_queue=None,
            )
            first = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
            if first.get("event") != "snapshot":
                raise RuntimeError(f"client {index}: first message {first.get('event')!r}")
            return ws

    async def read(self, index: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                at = time.monotonic()
                message: dict[str, Any] = json.loads(raw)
                bench = (message.get("data") or {}).get("bench")
                if bench is not None:
                    self.records.append(
                        (index, str(bench["phase"]), int(bench["n"]), int(message["seq"]), at)
                    )
        except ConnectionClosed as closed:
            if not self.stopping:
                self.closed_early += 1
                self.errors.append(f"client {index} closed: {closed}")


async def main(url: str, origin: str, cookie: str, count: int) -> dict[str, Any]:
    clients = Clients(url, origin, cookie)
    gate = asyncio.Semaphore(CONNECTING)
    started = time.monotonic()
    sockets = await asyncio.gather(*(clients.open(n, gate) for n in range(count)))
    readers = [asyncio.create_task(clients.read(n, ws)) for n, ws in enumerate(sockets)]
    print(
        json.dumps({"ready": len(sockets), "connect_seconds": time.monotonic() - started}),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    clients.stopping = True
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "records": clients.records,
        "errors": clients.errors[:20],
        "closed_early": clients.closed_early,
    }


if __name__ == "__main__":
    url, origin, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cookie = os.environ["BENCH_WS_COOKIE"]
    print(json.dumps(asyncio.run(main(url, origin, cookie, count))), flush=True)

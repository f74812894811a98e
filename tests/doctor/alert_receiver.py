"""A local HTTP receiver for alerts: records every request and answers as it is told."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None if it was not JSON)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class AlertReceiver:
    """``http://127.0.0.1:<free port>``; answers 200 ``{"ok": true}`` unless told otherwise
    with ``answer_next`` (for the next N requests). ``delay`` holds every answer that long."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.delay = 0.0
        self._planned: deque[Answer] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with receiver._lock:
                    receiver.received.append(
                        Received("POST", self.path, dict(self.headers.items()), body)
                    )
                    answer = receiver._planned.popleft() if receiver._planned else None
                if receiver.delay:
                    time.sleep(receiver.delay)
                if answer is None:
                    answer = Answer(200, {"Content-Type": "application/json"}, '{"ok": true}')
                payload = answer.body.encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer_next(
        self, status: int, *, count: int = 1, headers: dict[str, str] | None = None, body: str = ""
    ) -> None:
        with self._lock:
            self._planned.extend(Answer(status, headers or {}, body) for _ in range(count))

    def paths(self) -> list[str]:
        with self._lock:
            return [request.path for request in self.received]

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- channel settings pointing at a receiver ---------------------------------------------------

WEBHOOK_PATH = "/hooks/generic-secret-path"
SLACK_PATH = "/services/T0000/B0000/slack-secret-path"
TELEGRAM_TOKEN = "123456789:test-token-never-logged"
TELEGRAM_CHAT_ID = "-1001234"


def channels_configure(
    settings: Any, url: str, *, webhook: bool = True, slack: bool = True, telegram: bool = True
) -> None:
    """Point the chosen channels at ``url`` (pytest-django's ``settings`` restores them)."""
    settings.ALERT_WEBHOOK_URL = f"{url}{WEBHOOK_PATH}" if webhook else ""
    settings.ALERT_SLACK_WEBHOOK_URL = f"{url}{SLACK_PATH}" if slack else ""
    settings.ALERT_TELEGRAM_BOT_TOKEN = TELEGRAM_TOKEN if telegram else ""
    settings.ALERT_TELEGRAM_CHAT_ID = TELEGRAM_CHAT_ID if telegram else ""
    settings.ALERT_TELEGRAM_API_URL = url


def rate_limits_reset() -> None:
    """Forget every channel's sends this minute, so one test's alerts never delay another's."""
    from tradingsite.redisconn import redis_client, redis_key

    client = redis_client()
    for key in client.scan_iter(match=redis_key("alerts", "rate", "*"), count=1000):
        client.delete(key)

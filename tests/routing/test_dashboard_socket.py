"""The dashboard websocket through the real ASGI server, channels-redis and a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from doctor.tasks import heartbeat_task
from tests.conftest import Process

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@contextmanager
def dashboard_socket(
    base_url: str, *, cookie: str | None, origin: str | None = None
) -> Iterator[ClientConnection]:
    host = urlsplit(base_url).netloc
    headers = {"Cookie": cookie} if cookie else {}
    with connect(
        f"ws://{host}/ws/dashboard/",
        additional_headers=headers,
        origin=Origin(origin or base_url),
        open_timeout=30,
    ) as socket:
        yield socket


def receive(socket: ClientConnection, *, timeout: float = 60) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(socket.recv(timeout=timeout))
    return message


def test_a_workers_heartbeat_reaches_a_logged_in_page(
    asgi_server: str, celery_worker_process: Process, viewer_user: User
) -> None:
    with dashboard_socket(asgi_server, cookie=session_cookie(viewer_user)) as socket:
        snapshot = receive(socket)
        assert snapshot["event"] == "snapshot"
        assert snapshot["data"] == {"heartbeats": []}

        heartbeat_task.apply_async(kwargs={"component": "worker"}, queue="default")

        push = receive(socket)
        assert push["event"] == "doctor.heartbeat"
        # Sequence numbers continue from the snapshot: a page can tell it missed nothing.
        assert push["seq"] == snapshot["seq"] + 1
        assert push["data"]["component"] == "worker"
        assert push["data"]["hostname"].startswith("test-")


def test_a_page_that_asks_to_resync_gets_the_current_state(
    asgi_server: str, celery_worker_process: Process, operator_user: User
) -> None:
    with dashboard_socket(asgi_server, cookie=session_cookie(operator_user)) as socket:
        first = receive(socket)
        heartbeat_task.apply_async(kwargs={"component": "ml"}, queue="ml")
        push = receive(socket)

        socket.send(json.dumps({"action": "resync"}))
        again = receive(socket)

    assert again["event"] == "snapshot"
    assert again["seq"] >= push["seq"] > first["seq"]
    assert [(b["component"], b["at"]) for b in again["data"]["heartbeats"]] == [
        ("ml", push["data"]["at"])
    ]


def test_an_anonymous_websocket_is_refused(asgi_server: str) -> None:
    with pytest.raises(InvalidStatus) as refused, dashboard_socket(asgi_server, cookie=None):
        pass
    assert refused.value.response.status_code == 403


def test_a_websocket_from_a_foreign_origin_is_refused(asgi_server: str, viewer_user: User) -> None:
    with (
        pytest.raises(InvalidStatus) as refused,
        dashboard_socket(
            asgi_server, cookie=session_cookie(viewer_user), origin="http://evil.example.com"
        ),
    ):
        pass
    assert refused.value.response.status_code == 403

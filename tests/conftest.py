"""Fixtures shared by the whole suite: real processes (Celery worker, ASGI server) and users."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection

from risk.models import RiskLimit

pytest_plugins = ["tests.firestore_support"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_cleanup() -> Iterator[None]:
    """Delete, at the end, every Redis key this suite wrote (all carry the test prefix)."""
    yield
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000):
        client.delete(key)
    # channels-redis and Celery queues also live under the prefix; nothing else is touched.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_url() -> str:
    """A DATABASE_URL for child processes that points at the test database pytest-django made."""
    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{params['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": test_database_url(), "ENV": "test", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Process:
    """A child process of the test, its output kept in a log file for failure messages."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def assert_running(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll ``condition`` until it is truthy (generous timeouts, never a speed test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {described}")
        time.sleep(interval)


WORKER_QUEUES = ("default", "executor", "ml")


@pytest.fixture
def celery_worker_process(transactional_db: None) -> Iterator[Process]:
    """A real Celery worker on the default, executor and ml queues, against the test database.

    The queues are emptied first: messages earlier tests queued without a worker (a router
    health refresh after fills, a scoring request) belong to those tests, not this one."""
    from tradingsite.celery import app

    with app.connection_for_write() as connection:
        for queue in WORKER_QUEUES:
            connection.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
    process = Process(
        "celery-worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tradingsite",
            "worker",
            "--queues",
            ",".join(WORKER_QUEUES),
            "--pool",
            "solo",
            "--hostname",
            f"test-{os.getpid()}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        child_env(),
    )
    try:

        def ready() -> bool:
            process.assert_running()
            return "ready." in process.log()

        wait_for(ready, timeout=60, what="the Celery worker to be ready")
        yield process
    finally:
        process.stop()


def daphne_command(port: int) -> list[str]:
    server = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    return [*server, "tradingsite.asgi:application"]


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[str]:
    """The real ASGI server (daphne) on a free port; yields its base URL."""
    port = free_port()
    process = Process("daphne", daphne_command(port), child_env())

    def listening() -> bool:
        process.assert_running()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=60, what="daphne to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def operator_user(django_user_model: type[User]) -> User:
    user = django_user_model.objects.create_user(username="olive", password="a-long-secret-1")
    user.groups.add(
        Group.objects.get_or_create(name="viewer")[0],
        Group.objects.get_or_create(name="operator")[0],
    )
    return user


@pytest.fixture
def viewer_user(django_user_model: type[User]) -> User:
    user = django_user_model.objects.create_user(username="vera", password="a-long-secret-2")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    return user


# The defaults a fresh install gets (from the data migration, so they cannot drift apart).
GLOBAL_DEFAULTS = {
    **importlib.import_module("risk.migrations.0002_global_limits").DEFAULTS,
    "stop_distance": Decimal("0.05"),  # added by risk.migrations.0003
}


@pytest.fixture
def global_limits(db: None) -> RiskLimit:
    """The global limits row (transactional tests flush what migrations created)."""
    row = RiskLimit.objects.filter(symbol="").first()
    if row is None:
        row = RiskLimit(symbol="", **GLOBAL_DEFAULTS)
        row._change_reason = "default limits at install"  # type: ignore[attr-defined]
        row.save()
    return row

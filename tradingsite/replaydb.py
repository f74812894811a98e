"""A replay's own database: the live code over history, never mixed with live data.

A replay runs the executor's own steps (``routing.replay``). Instead of a ``run`` column on
every table (and a filter on every live query that a single omission would break), each replay
run gets a database of its own with the same tables:

- on PostgreSQL, a schema ``replay_<id>`` in the same database (the connection's
  ``search_path`` is that schema alone, so a replay cannot read or write a live table);
- on SQLite, a file beside the main one.

``replay_database(run_id)`` makes that database the thread's default connection for the
duration of the block, so every function (ORM queries, ``transaction.atomic``, row locks,
``on_commit`` hooks) works on it unchanged; leaving the block gives the live connection back.
While a replay database is in use, effects that leave the database — live pushes, the
Firestore outbox, alerts, router-health refresh tasks — are switched off (``replay_active``):
a replay is history, not news.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

_active: ContextVar[int | None] = ContextVar("replay_database", default=None)


def replay_active() -> int | None:
    """The replay run whose database is in use in this context, or None (live)."""
    return _active.get()


def _live_settings() -> dict[str, Any]:
    config: dict[str, Any] = connections.settings[DEFAULT_DB_ALIAS]
    return config


def _is_sqlite(config: dict[str, Any]) -> bool:
    return str(config["ENGINE"]).endswith("sqlite3")


def replay_schema(run_id: int) -> str:
    return f"replay_{int(run_id)}"


def replay_sqlite_path(run_id: int) -> Path:
    live = Path(str(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]))
    return live.with_name(f"{live.stem}-replay-{int(run_id)}.sqlite3")


def replay_storage(run_id: int) -> str:
    """Where the run's rows live, for the record: a schema name or a file name."""
    if _is_sqlite(_live_settings()):
        return replay_sqlite_path(run_id).name
    return replay_schema(run_id)


def _replay_settings(run_id: int) -> dict[str, Any]:
    # The live connection's own settings (the test database's, under the test runner).
    config = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)
    config["CONN_MAX_AGE"] = 0
    config["ATOMIC_REQUESTS"] = False
    options = dict(config.get("OPTIONS") or {})
    if _is_sqlite(config):
        config["NAME"] = str(replay_sqlite_path(run_id))
        # WAL with NORMAL stays consistent after a crash (the last commits may be lost: a
        # resumed run goes on from the last chunk it finds).
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    else:
        existing = str(options.get("options", ""))
        schema = replay_schema(run_id)
        if not re.fullmatch(r"replay_\d+", schema):
            raise ValueError(f"not a replay schema: {schema!r}")
        options["options"] = f"{existing} -c search_path={schema} -c synchronous_commit=off".strip()
    config["OPTIONS"] = options
    return config


def _connection(run_id: int) -> BaseDatabaseWrapper:
    config = _replay_settings(run_id)
    backend = load_backend(config["ENGINE"])
    wrapper: BaseDatabaseWrapper = backend.DatabaseWrapper(config, alias=DEFAULT_DB_ALIAS)
    return wrapper


class ReplayDatabaseMissing(LookupError):
    """The run has no database (never started, or deleted)."""


@contextmanager
def replay_database(run_id: int, *, must_exist: bool = True) -> Iterator[None]:
    """Run the block on replay ``run_id``'s database (created by ``replay_database_create``);
    ``ReplayDatabaseMissing`` when it has none."""
    if _active.get() is not None:
        raise RuntimeError("a replay database is already in use in this context")
    live = connections[DEFAULT_DB_ALIAS]
    if live.in_atomic_block:
        raise RuntimeError("a replay database cannot be entered inside a live transaction")
    if must_exist and not replay_database_exists(run_id):
        raise ReplayDatabaseMissing(f"replay {run_id} has no database")
    replay = _connection(run_id)
    token = _active.set(run_id)
    connections[DEFAULT_DB_ALIAS] = replay
    try:
        yield
    finally:
        connections[DEFAULT_DB_ALIAS] = live
        _active.reset(token)
        replay.close()


def replay_database_exists(run_id: int) -> bool:
    if _is_sqlite(_live_settings()):
        return replay_sqlite_path(run_id).exists()
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
            [replay_schema(run_id)],
        )
        return cursor.fetchone() is not None


def replay_database_create(run_id: int) -> None:
    """An empty database for the run with every table of the project (no rows)."""
    if replay_database_exists(run_id):
        raise RuntimeError(f"replay {run_id} already has a database")
    if not _is_sqlite(_live_settings()):
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{replay_schema(run_id)}"')
    with replay_database(run_id, must_exist=False):
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.schema_editor() as editor:
            for model in apps.get_models():
                if model._meta.managed and not model._meta.proxy:
                    editor.create_model(model)


def replay_database_drop(run_id: int) -> None:
    """Remove the run's database (its rows go with it); nothing when there is none."""
    if _is_sqlite(_live_settings()):
        path = replay_sqlite_path(run_id)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{replay_schema(run_id)}" CASCADE')

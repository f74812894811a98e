"""Enqueueing Firestore mirror writes inside the transaction that makes the change."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from tradingsite.models import OutboxEntry
from tradingsite.replaydb import replay_active

# Firestore ids: no "/", not "." or "..", not __reserved__, at most 1,500 bytes.
_RESERVED_ID = re.compile(r"__.*__")
_MAX_ID_BYTES = 1500


class OutboxError(ValueError):
    pass


def _check_id(kind: str, value: str) -> None:
    if not value or value in {".", ".."} or "/" in value or _RESERVED_ID.fullmatch(value):
        raise OutboxError(f"{kind} {value!r} is not a valid Firestore id")
    if len(value.encode()) > _MAX_ID_BYTES:
        raise OutboxError(f"{kind} is longer than {_MAX_ID_BYTES} bytes")


def enqueue(collection: str, doc_id: str, payload: dict[str, Any]) -> OutboxEntry:
    """Record ``payload`` to be mirrored as ``collection/doc_id``; call inside the write's atomic().

    Refusing to run outside a transaction is the point: a row written on its own could commit
    while the change it mirrors rolls back (or the other way round).
    """
    if not connection.in_atomic_block:
        raise OutboxError("enqueue() must be called inside the transaction of the change")
    if replay_active() is not None:  # the mirrors skip replays; this catches one that did not
        raise OutboxError("a replay's database is never mirrored to Firestore")
    _check_id("collection", collection)
    _check_id("doc_id", doc_id)
    if not isinstance(payload, dict):
        raise OutboxError("payload must be a JSON object")
    try:
        normalised = payload_normalised(payload)
    except (TypeError, ValueError) as error:
        raise OutboxError(f"payload is not JSON: {error}") from None
    return OutboxEntry.objects.create(collection=collection, doc_id=doc_id, payload=normalised)


def payload_normalised(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as stored and mirrored: Decimals and datetimes become strings here, once,
    so the mirror never sees floats (``fs_doctor`` compares documents built the same way)."""
    normalised: dict[str, Any] = json.loads(
        json.dumps(payload, cls=DjangoJSONEncoder, allow_nan=False)
    )
    return normalised

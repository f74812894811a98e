"""What the Firestore mirror should hold: one registry of the mirrored collections.

Each collection has a *builder* per document (``*_document``: a database row → its payload,
used by the service that enqueues the change) and an *expected* function (the documents the
database says should exist now, ``doc_id → payload``), used by ``fs_doctor`` to compare and
repair and by ``publish_state`` to publish everything. Both sides go through
``document_normalised`` — the normalisation ``tradingsite.outbox.enqueue`` applies — so a
document compares equal to what the enqueue site sent.

Decimal amounts become fixed-point strings at the stored precision (``_amount``), so a value
still in memory after a save (``Decimal("0.5")``, or an unrounded product) and the same value
read back from the database (``Decimal("0.50000000")``) give the same document, and zero is
``"0.00000000"`` rather than ``"0E-8"``.

========== ================ ============================================================
collection document id     document
========== ================ ============================================================
risk_state ``current``      the risk state row (``risk.selectors.state_payload``) with its
                            effective limits
nav        ``latest``       the newest NAV point
positions  the symbol       each symbol's net position
incidents  the incident id  every incident (``doctor.mirror.incident_document``)
doctor     ``latest``       the newest doctor snapshot (``doctor.mirror.snapshot_document``)
predictions ``v{n}-{SYM}``  each model version's newest prediction per symbol (its
                            immutable fields only: outcome and staleness change later
                            without a mirror write)
========== ================ ============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Max

from doctor.mirror import DOCTOR, DOCTOR_LATEST, INCIDENTS, incident_document, snapshot_document
from doctor.models import DoctorSnapshot, Incident
from mlinsights.models import Prediction
from risk.models import RiskState
from risk.selectors import state_payload, values_from_row
from routing.models import NavPoint, Position
from tradingsite.decimals import quantize
from tradingsite.outbox import enqueue, payload_normalised
from tradingsite.replaydb import replay_active

Document = dict[str, Any]

RISK_STATE = "risk_state"
RISK_STATE_ID = "current"
NAV = "nav"
NAV_LATEST = "latest"
POSITIONS = "positions"
PREDICTIONS = "predictions"


def document_normalised(payload: Mapping[str, Any]) -> Document:
    """The payload as the outbox stores it (``tradingsite.outbox.payload_normalised``), so an
    expected document and an enqueued one compare equal."""
    return payload_normalised(payload)


def _amount(value: Decimal) -> str:
    """Rounded as the database stores it (half-even to 8 places), written without exponent."""
    return f"{quantize(value):f}"


# --- builders: one row → its document --------------------------------------------------------


def risk_state_document(row: RiskState) -> Document:
    """Replicates what ``risk.services._after_change`` enqueues (it should call this)."""
    payload = state_payload(values_from_row(row), version=row.version)
    return document_normalised({**payload, "effective_limits": row.effective_limits})


def nav_document(point: NavPoint) -> Document:
    """The newest NAV point; ``wallet`` is the stored (quantized) wallet balance."""
    return document_normalised(
        {"at": point.at, "nav": _amount(point.nav), "wallet": _amount(point.wallet)}
    )


def position_document(position: Position) -> Document:
    return document_normalised(
        {
            "symbol": position.symbol,
            "quantity": _amount(position.quantity),
            "entry_price": _amount(position.entry_price),
            "realized_pnl": _amount(position.realized_pnl),
            "fees": _amount(position.fees),
        }
    )


# --- enqueueing from the database (call inside the transaction of the change) ----------------
#
# Each reads its row back from the database first, so the document is exactly what was stored
# (after the database's rounding), never an in-memory value that differs from it.


def risk_state_mirror(row: RiskState) -> None:
    """``row`` as sealed: the risk services refresh it from the database before they call
    this (``risk.services._seal``), so it is what the database holds without reading it again
    on every tick."""
    if replay_active() is not None:
        return
    enqueue(RISK_STATE, RISK_STATE_ID, risk_state_document(row))


def nav_mirror() -> None:
    if replay_active() is not None:
        return
    point = NavPoint.objects.order_by("-at", "-id").first()
    if point is not None:
        enqueue(NAV, NAV_LATEST, nav_document(point))


def position_mirror(*, symbol: str) -> None:
    if replay_active() is not None:
        return
    row = Position.objects.filter(symbol=symbol).first()
    if row is not None:
        enqueue(POSITIONS, symbol, position_document(row))


def prediction_doc_id(*, version: int, symbol: str) -> str:
    return f"v{version}-{symbol}"


def prediction_document(prediction: Prediction) -> Document:
    """Only fields fixed when the prediction is made: a later outcome or stale flag would
    otherwise leave the mirror stale with no enqueue to fix it."""
    return document_normalised(
        {
            "prediction_id": prediction.pk,
            "version": prediction.model_version.version,
            "symbol": prediction.symbol,
            "as_of": prediction.as_of,
            "horizon_bars": prediction.horizon_bars,
            "probability": prediction.probability,
            "close": _amount(prediction.close),
            "scored_at": prediction.scored_at,
        }
    )


def prediction_latest(*, model_version_id: int, symbol: str) -> Prediction | None:
    return (
        Prediction.objects.select_related("model_version")
        .filter(model_version_id=model_version_id, symbol=symbol)
        .order_by("-as_of", "-id")
        .first()
    )


def prediction_mirror(*, model_version_id: int, symbol: str) -> None:
    """Inside the transaction that wrote a prediction: enqueue that model's and symbol's newest.

    The newest, not the one just written: scoring an older bar late must not roll the mirror
    back.
    """
    if replay_active() is not None:
        return
    latest = prediction_latest(model_version_id=model_version_id, symbol=symbol)
    if latest is None:
        return
    doc_id = prediction_doc_id(version=latest.model_version.version, symbol=symbol)
    enqueue(PREDICTIONS, doc_id, prediction_document(latest))


# --- what the database says the mirror should hold now ---------------------------------------


def _risk_state_expected() -> dict[str, Document]:
    row = RiskState.objects.order_by("pk").first()
    return {} if row is None else {RISK_STATE_ID: risk_state_document(row)}


def _nav_expected() -> dict[str, Document]:
    point = NavPoint.objects.order_by("-at", "-id").first()
    return {} if point is None else {NAV_LATEST: nav_document(point)}


def _positions_expected() -> dict[str, Document]:
    return {row.symbol: position_document(row) for row in Position.objects.order_by("symbol")}


def _incidents_expected() -> dict[str, Document]:
    return {
        str(row.pk): document_normalised(incident_document(row)) for row in Incident.objects.all()
    }


def _doctor_expected() -> dict[str, Document]:
    snapshot = DoctorSnapshot.objects.order_by("-taken_at", "-id").first()
    if snapshot is None:
        return {}
    return {DOCTOR_LATEST: document_normalised(snapshot_document(snapshot))}


def _predictions_expected() -> dict[str, Document]:
    newest = (
        Prediction.objects.values("model_version_id", "symbol")
        .annotate(newest=Max("as_of"))
        .order_by("model_version_id", "symbol")
    )
    expected: dict[str, Document] = {}
    for group in newest:
        latest = prediction_latest(
            model_version_id=group["model_version_id"], symbol=group["symbol"]
        )
        if latest is not None:
            doc_id = prediction_doc_id(version=latest.model_version.version, symbol=latest.symbol)
            expected[doc_id] = prediction_document(latest)
    return expected


@dataclass(frozen=True)
class MirroredCollection:
    name: str
    expected: Callable[[], dict[str, Document]]
    description: str


MIRRORED: tuple[MirroredCollection, ...] = (
    MirroredCollection(RISK_STATE, _risk_state_expected, "the risk state"),
    MirroredCollection(NAV, _nav_expected, "the newest NAV point"),
    MirroredCollection(POSITIONS, _positions_expected, "each symbol's position"),
    MirroredCollection(INCIDENTS, _incidents_expected, "every incident"),
    MirroredCollection(DOCTOR, _doctor_expected, "the newest doctor snapshot"),
    MirroredCollection(PREDICTIONS, _predictions_expected, "newest prediction per model, symbol"),
)
COLLECTION_NAMES: tuple[str, ...] = tuple(c.name for c in MIRRORED)


# The collections whose writers lock (or update) their rows; the rest are append-only
# "latest" documents that the next row written supersedes.
LOCKED_COLLECTIONS = (RISK_STATE, POSITIONS, INCIDENTS)


def mirror_sources_lock(*, collections: tuple[str, ...] = COLLECTION_NAMES) -> None:
    """Inside a transaction: lock the rows the writers of ``collections`` lock (or update), so
    documents built next and enqueued in the same transaction are the newest. A writer waiting
    on these locks enqueues after us, with a higher id: its newer payload is the one that
    stays. Append-only "latest" documents (NAV, predictions, the doctor) need no lock: the next
    row written supersedes ours within a tick or a minute."""
    if RISK_STATE in collections:
        list(RiskState.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
    if POSITIONS in collections:
        list(Position.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
    if INCIDENTS in collections:
        list(Incident.objects.select_for_update().order_by("pk").values_list("pk", flat=True))


def mirror_expected(
    *, collections: tuple[str, ...] = COLLECTION_NAMES
) -> dict[str, dict[str, Document]]:
    """Every mirrored collection's documents as the database says they should be now."""
    unknown = sorted(set(collections) - set(COLLECTION_NAMES))
    if unknown:
        raise ValueError(
            f"not a mirrored collection: {', '.join(unknown)} (choose from "
            f"{', '.join(COLLECTION_NAMES)})"
        )
    return {c.name: c.expected() for c in MIRRORED if c.name in collections}

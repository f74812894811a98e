from __future__ import annotations

import importlib

import pytest

from risk.models import RiskLimit

# The defaults a fresh install gets (from the data migration, so they cannot drift apart).
GLOBAL_DEFAULTS = importlib.import_module("risk.migrations.0002_global_limits").DEFAULTS


@pytest.fixture
def global_limits(db: None) -> RiskLimit:
    """The global limits row (transactional tests flush what migrations created)."""
    row = RiskLimit.objects.filter(symbol="").first()
    if row is None:
        row = RiskLimit(symbol="", **GLOBAL_DEFAULTS)
        row._change_reason = "default limits at install"  # type: ignore[attr-defined]
        row.save()
    return row

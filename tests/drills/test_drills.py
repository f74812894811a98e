"""CI runs every drill at its minimum size (SPEC: ≥ 1,000 faulty orders, ≥ 3 worker kills, one
of each outage), each in its own process on its own Redis server and PostgreSQL database, so
a regression in surviving a fault fails the suite."""

from __future__ import annotations

import pytest

from tests.drills.base import DRILLS
from tests.drills.run import drill_run

BOUNDED_TIMEOUT = 900.0


@pytest.mark.timeout(BOUNDED_TIMEOUT + 60)
@pytest.mark.parametrize("name", [drill.name for drill in DRILLS])
def test_drill_passes_at_ci_size(name: str) -> None:
    verdict = drill_run(name, bounded=True, timeout=BOUNDED_TIMEOUT)
    assert verdict.passed, verdict.line
    assert verdict.figures, "a passing drill reports its figures"

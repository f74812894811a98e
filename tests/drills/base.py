"""What every drill shares: its entry in the registry and its verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Drill:
    """A drill: the module with its ``run(stack, bounded=...) -> Verdict`` and its stack layout
    (keyword arguments of :class:`tests.drills.stack.Stack`)."""

    name: str
    title: str
    module: str
    layout: dict[str, Any] = field(default_factory=dict)


# In the order `make drills` runs them (and the CI test lists them).
DRILLS: tuple[Drill, ...] = (
    Drill(
        "exchange_faults",
        "exchange faults",
        "tests.drills.drill_exchange_faults",
        {
            "ml_workers": 0,
            "web": False,
            "firestore": False,
            "symbols": (
                "BTCUSDT",
                "ETHUSDT",
                "SOLUSDT",
                "XRPUSDT",
                "ADAUSDT",
                "DOGEUSDT",
                "LTCUSDT",
                "LINKUSDT",
            ),
        },
    ),
    Drill(
        "worker_kill",
        "worker killed mid-tick",
        "tests.drills.drill_worker_kill",
        # The production interval: the executor lock's expiry (six intervals) then outlasts a
        # worker's restart, as it does in production (at 1 s it expires during the restart).
        {"executor_interval": 5},
    ),
    Drill("redis_restart", "Redis restarted", "tests.drills.drill_redis_restart"),
    # The production interval (5 s): a tick of two trading symbols costs about 65-100 request
    # weight, so ticks every 1-3 s spend the venue's budget (80 % of 2,400 a minute) before
    # the minute ends and a tick then waits for the next minute, which would be measured here
    # as an outage effect (CI saw it at 3 s).
    Drill(
        "firestore_down",
        "Firestore emulator down",
        "tests.drills.drill_firestore_down",
        {"executor_interval": 5},
    ),
    Drill(
        "postgres_drop",
        "PostgreSQL connections dropped",
        "tests.drills.drill_postgres_drop",
        {"executor_interval": 5},
    ),
    Drill(
        "scale_out",
        "scale-out",
        "tests.drills.drill_scale_out",
        # The production interval, as above: at 1 s the venue's weight budget ran out within
        # the minute and the ticks after the kill waited for the next one (CI saw it).
        {"workers": 2, "ml_workers": 2, "executor_interval": 5},
    ),
)
BY_NAME = {drill.name: drill for drill in DRILLS}


@dataclass
class Verdict:
    """A drill's outcome: passed or not, one line with its figures, and the figures."""

    drill: str
    passed: bool
    line: str
    figures: dict[str, Any] = field(default_factory=dict)
    bounded: bool = False
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_file(cls, path: Path) -> Verdict:
        return cls(**json.loads(path.read_text()))


class Checks:
    """Collects a drill's pass/fail conditions so the verdict names every one that failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failed.append(what)
        return ok

    def verdict(
        self, drill: str, summary: str, figures: dict[str, Any], *, bounded: bool
    ) -> Verdict:
        passed = not self.failed
        line = f"{'PASS' if passed else 'FAIL'} {drill}: {summary}"
        if not passed:
            line += " — failed: " + "; ".join(self.failed)
        return Verdict(drill=drill, passed=passed, line=line, figures=figures, bounded=bounded)


def seconds_text(value: float | None) -> str:
    """A duration for a verdict line; "never" when it did not happen."""
    return "never" if value is None else f"{value:.1f} s"


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

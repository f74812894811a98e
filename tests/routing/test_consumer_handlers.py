from __future__ import annotations

import re
from pathlib import Path

from routing.consumers import DashboardConsumer

ROOT = Path(__file__).resolve().parents[2]
APPS = ["tradingsite", "doctor", "routing", "risk"]
PUSH = re.compile(r"live_push\(\s*event=\"([^\"]+)\"")


def pushed_events() -> set[str]:
    events: set[str] = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            events |= set(PUSH.findall(path.read_text()))
    return events


def test_the_scan_finds_the_pushes_it_should() -> None:
    assert {"doctor.heartbeat", "risk.state"} <= pushed_events()


def test_every_pushed_event_has_a_handler_on_the_dashboard_consumer() -> None:
    # Channels fails the whole connection on a message type without a handler.
    missing = [e for e in pushed_events() if not hasattr(DashboardConsumer, e.replace(".", "_"))]
    assert missing == []

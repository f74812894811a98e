"""A venue call that waits (weight budget, Retry-After, back-off) keeps the caller's lock."""

from __future__ import annotations

import time

import pytest

from routing import runtime
from routing.runtime import renewing_sleep


def test_a_long_wait_renews_the_lock_all_along(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RENEW_EVERY_SECONDS", 0.02)
    renewed: list[float] = []
    started = time.monotonic()

    renewing_sleep(lambda: renewed.append(time.monotonic()))(0.1)

    assert time.monotonic() - started >= 0.1
    assert len(renewed) >= 4
    gaps = [b - a for a, b in zip([started, *renewed], renewed, strict=False)]
    assert max(gaps) < 0.08


def test_a_lost_lock_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RENEW_EVERY_SECONDS", 0.01)

    def lost() -> None:
        raise RuntimeError("lock lost")

    with pytest.raises(RuntimeError, match="lock lost"):
        renewing_sleep(lost)(5.0)

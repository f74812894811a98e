"""One request-weight budget per venue IP, shared by every worker process through Redis.

Binance counts request weight per IP per minute (USD-M futures: 2400, read the live value from
exchangeInfo ``rateLimits``); going over earns 429s and, if continued, a 418 ban (SPEC §13).
Each process reserves the weight of a request here before sending it, so adding workers can
never add up to more than ``headroom`` of the limit; after the answer, ``observe`` raises the
counter to the venue's own count from ``X-MBX-USED-WEIGHT-1M`` (which also sees weight spent
by anything else on the same IP).

The count is kept per UTC minute window ``floor(now_ms / 60000)`` in one Redis key per window
that expires after two minutes. Callers pass ``now_ms`` (server-time-corrected milliseconds) so
the window follows the venue's clock and tests control time.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from tradingsite.redisconn import redis_client, redis_key

if TYPE_CHECKING:
    import redis

WINDOW_MS = 60_000
KEY_TTL_MS = 120_000
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Check and add in one step on the Redis server, so two processes can never both see room
# for the last slot. Returns the count after the reservation, or -1 when it did not fit.
_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local weight = tonumber(ARGV[1])
if used + weight > tonumber(ARGV[2]) then
  return -1
end
used = redis.call('INCRBY', KEYS[1], weight)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return used
"""

# Raise, never lower: the venue's count can only be behind ours when our own reservations
# are still in flight.
_OBSERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if seen > used then
  redis.call('SET', KEYS[1], seen, 'PX', ARGV[2])
  return seen
end
return used
"""


class WeightBudget:
    """``reserve`` before each request, ``observe`` each answer's ``X-MBX-USED-WEIGHT-1M``.

    ``name`` tells budgets apart (one per venue IP; tests use their own).
    """

    def __init__(
        self,
        limit_per_minute: int,
        headroom: float = 0.8,
        client: redis.Redis | None = None,
        *,
        name: str = "binance-futures",
    ) -> None:
        if limit_per_minute <= 0:
            raise ValueError("limit_per_minute must be positive")
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.limit_per_minute = limit_per_minute
        self.headroom = headroom
        self.name = name
        # Via str: 0.29 * 100 in floats is 28.999..., which would lose a unit of budget.
        self.cap = int((Decimal(str(headroom)) * limit_per_minute).to_integral_value(ROUND_FLOOR))
        self._client = client if client is not None else redis_client()
        self._reserve = self._client.register_script(_RESERVE)
        self._observe = self._client.register_script(_OBSERVE)

    def key(self, window: int) -> str:
        return redis_key("weight", self.name, str(window))

    def reserve(self, weight: int, *, now_ms: int) -> float:
        """Seconds to wait before sending; 0.0 means the weight is reserved, send now.

        Nothing is reserved when the answer is positive: wait, then ask again (the wait ends
        at the next minute window, where the budget starts fresh).
        """
        if weight <= 0:
            raise ValueError("weight must be positive")
        if weight > self.cap:
            raise ValueError(f"weight {weight} can never fit a budget of {self.cap} per minute")
        window = now_ms // WINDOW_MS
        used = int(self._reserve(keys=[self.key(window)], args=[weight, self.cap, KEY_TTL_MS]))
        if used >= 0:
            return 0.0
        return ((window + 1) * WINDOW_MS - now_ms) / 1000

    def observe(self, used_weight_1m: int, *, now_ms: int) -> int:
        """Raise this window's count to the venue's ``X-MBX-USED-WEIGHT-1M``; returns the count."""
        window = now_ms // WINDOW_MS
        return int(self._observe(keys=[self.key(window)], args=[used_weight_1m, KEY_TTL_MS]))

    def used(self, *, now_ms: int) -> int:
        """Weight counted so far in the window of ``now_ms``."""
        raw = self._client.get(self.key(now_ms // WINDOW_MS))
        return int(raw) if raw is not None else 0


def used_weight_from_headers(headers: Mapping[str, str]) -> int | None:
    """``X-MBX-USED-WEIGHT-1M`` of a venue answer, or None when absent or unparsable.

    ``headers`` must be case-insensitive, as ``requests.Response.headers`` is: the venue may
    send the name in lower case.
    """
    raw = headers.get(USED_WEIGHT_HEADER)
    if raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        return None
    return value if value >= 0 else None

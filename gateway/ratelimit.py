"""Per-elevator rate limit, so a babbling device cannot take the gateway from the others.

A token bucket per elevator: `rate` frames per second sustained, `burst` at once (generous,
because a device that was offline legitimately sends its backlog when it reconnects).
"""

from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    allowed: bool
    first_refusal: bool  # the first refusal of an episode: worth a log line and a record


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float, bool]] = {}  # tokens, at, refusing

    def check(self, elevator_id: str, now_s: float) -> Decision:
        tokens, at, refusing = self._buckets.get(elevator_id, (self._burst, now_s, False))
        tokens = min(self._burst, tokens + (now_s - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[elevator_id] = (tokens - 1.0, now_s, False)
            return Decision(True, False)
        self._buckets[elevator_id] = (tokens, now_s, True)
        return Decision(False, not refusing)

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

    def __len__(self) -> int:
        return len(self._buckets)

    def forget_full(self, now_s: float) -> None:
        """Drop the buckets that have refilled: a full bucket acts as a missing one, so this
        bounds memory (e.g. one bucket per client address) without changing any decision."""
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket[0] + (now_s - bucket[1]) * self._rate < self._burst
        }

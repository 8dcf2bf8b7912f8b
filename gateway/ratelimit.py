"""Per-elevator rate limit, so a babbling device cannot take the gateway from the others.

A token bucket per elevator: `rate` frames per second sustained, `burst` at once (generous,
because a device that was offline legitimately sends its backlog when it reconnects).

Held for every elevator of the fleet, so a bucket is one number: the time at which it is full
again (the generic cell rate algorithm, GCRA). It holds `burst - (full_at - now) * rate`
tokens; taking one moves `full_at` on by `1 / rate`. A bucket that is full again is the same
as a missing one, so now and then (every second, or every 1 / rate if longer) the full ones
are dropped: the limiter holds the keys seen lately (a device at the fleet's cadence is full
again within 1 / rate), not all. Time is taken to go forward.
"""

from __future__ import annotations

from typing import Final, NamedTuple

_FORGET_EVERY_S: Final = 1.0


class Decision(NamedTuple):
    allowed: bool
    first_refusal: bool  # the first refusal of an episode: worth a log line and a record


_ALLOWED = Decision(True, False)


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._interval = 1.0 / rate  # the time one token takes to come back
        self._full_at: dict[str, float] = {}
        self._refusing: set[str] = set()  # keys in a refusal episode (few)
        self._forget_every_s = max(_FORGET_EVERY_S, self._interval)
        self._forget_at = float("-inf")

    def check(self, key: str, now_s: float) -> Decision:
        if now_s >= self._forget_at:
            self.forget_full(now_s)
            self._forget_at = now_s + self._forget_every_s
        full_at = max(self._full_at.get(key, now_s), now_s)
        if self._burst - (full_at - now_s) * self._rate >= 1.0:
            self._full_at[key] = full_at + self._interval
            if self._refusing:
                self._refusing.discard(key)
            return _ALLOWED
        first = key not in self._refusing
        self._refusing.add(key)
        return Decision(False, first)

    def wait_s(self, key: str, now_s: float) -> float:
        """How long until `key` may take a token (0: now), without taking one."""
        full_at = self._full_at.get(key, now_s)
        return max(0.0, full_at - now_s - (self._burst - 1.0) / self._rate)

    def __len__(self) -> int:
        return len(self._full_at)

    def forget_full(self, now_s: float) -> None:
        """Drop the buckets that have refilled: a full bucket acts as a missing one, so this
        bounds memory without changing any decision."""
        self._full_at = {key: at for key, at in self._full_at.items() if at > now_s}
        self._refusing &= self._full_at.keys()

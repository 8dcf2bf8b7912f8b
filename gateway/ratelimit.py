"""Per-key rate limit, so a babbling device cannot take the gateway from the others.

A token bucket per key: `rate` per second sustained, `burst` at once. Held for many keys, so
a bucket is the time at which it is full again (the generic cell rate algorithm, GCRA): it
holds `burst - (full_at - now) * rate` tokens; taking one moves `full_at` on by `1 / rate`.

Two clocks, because a device is judged by its own: `now_s` is the time the bucket runs on
(for an elevator, the device's `ts`, so a backlog it buffered for hours and flushes at once is
as fast as it was recorded, not as fast as the broker delivers it), `seen_s` the receiving
clock, which only decides when a bucket may be forgotten. A bucket that is full again is the
same as a missing one, so now and then (every second, or every 1 / rate if longer) the full
ones are dropped: the limiter holds the keys heard lately, not all of them.
"""

from __future__ import annotations

from typing import Final, NamedTuple

_FORGET_EVERY_S: Final = 1.0


class Decision(NamedTuple):
    allowed: bool
    first_refusal: bool  # the first refusal of an episode: worth a log line


_ALLOWED = Decision(True, False)


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._interval = 1.0 / rate  # the time one token takes to come back
        # key -> (full again at, on the bucket's clock; full again at, on the receiving clock)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._refusing: set[str] = set()  # keys in a refusal episode (few)
        self._forget_every_s = max(_FORGET_EVERY_S, self._interval)
        self._forget_at = float("-inf")

    def check(self, key: str, now_s: float, seen_s: float | None = None) -> Decision:
        """Take a token from `key`'s bucket at `now_s` (its own clock), received at `seen_s`
        (the same clock when None)."""
        seen_s = now_s if seen_s is None else seen_s
        if seen_s >= self._forget_at:
            self.forget_full(seen_s)
            self._forget_at = seen_s + self._forget_every_s
        bucket = self._buckets.get(key)
        full_at = now_s if bucket is None else max(bucket[0], now_s)
        if self._burst - (full_at - now_s) * self._rate >= 1.0:
            full_at += self._interval
            self._buckets[key] = (full_at, seen_s + full_at - now_s)
            if self._refusing:
                self._refusing.discard(key)
            return _ALLOWED
        first = key not in self._refusing
        self._refusing.add(key)
        return Decision(False, first)

    def wait_s(self, key: str, now_s: float) -> float:
        """How long until `key` may take a token (0: now), without taking one."""
        bucket = self._buckets.get(key)
        full_at = now_s if bucket is None else bucket[0]
        return max(0.0, full_at - now_s - (self._burst - 1.0) / self._rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def forget_full(self, seen_s: float) -> None:
        """Drop the buckets that have refilled by `seen_s` (receiving clock): a full bucket
        acts as a missing one, so this bounds memory without changing any decision."""
        self._buckets = {key: b for key, b in self._buckets.items() if b[1] > seen_s}
        self._refusing &= self._buckets.keys()

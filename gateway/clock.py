"""The one source of "now".

Nothing else in the gateway reads the wall clock: rules, SLA clocks and incidents take
`now` as an argument, and the long-lived parts get a `Clock` when they are built. That
is what lets tests drive time by hand and the demo run the whole product faster than
real time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


def wall_time() -> float:
    """Unix seconds, for a moment recorded where no `Clock` is (the MQTT receiver process);
    `at_wall` maps it onto a clock."""
    return time.time()


def at_wall(clock: Clock, wall: float) -> datetime:
    """`clock`'s time at the Unix wall time `wall`: its now, less the wall time since."""
    return clock.now() - timedelta(seconds=max(0.0, time.time() - wall))


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class FixedClock:
    """A clock that only moves when told to; `sleep` advances it instantly."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


class ScaledClock:
    """Runs `speed` times faster than real time from `start` (the demo's clock).

    Anchored to the wall clock rather than a monotonic one, so that another process can run
    the very same clock: `ScaledClock(c.speed, c.start, c.anchor)`.
    """

    def __init__(
        self, speed: float, start: datetime | None = None, anchor: float | None = None
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self.start = (start or datetime.fromtimestamp(self.anchor, UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)

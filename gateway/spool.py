"""A bounded, crash-safe disk spool for telemetry the time-series store could not take.

Each appended batch is one segment file, written to a temporary name, fsynced and renamed
into place, so a crash leaves either the whole batch or nothing. Segments are replayed
oldest first. Over `max_bytes` the oldest segments are dropped and counted: the spool only
ever holds telemetry, never incidents.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import msgspec

_SUFFIX = ".seg"
_ENCODER = msgspec.json.Encoder()


class Point(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One time-series point: its line-protocol text plus what the embedded store indexes.

    Out of the garbage collector's sight (gc=False; it holds no containers): a slow store
    keeps seconds of points waiting, and as tracked objects they made each full collection
    of the gateway's process long (100 ms and more, every few seconds, at 12,000 frames/s),
    which held the pipeline thread and every alert on it. A JSON array, like a tuple.
    """

    measurement: str
    elevator_id: str
    ts_ns: int
    line: str
    # The frame's identity, for the embedded store's exactly-once (None: not a frame).
    boot: int | None = None
    seq: int | None = None


def _encode(points: Sequence[Point]) -> bytes:
    return b"".join(_ENCODER.encode(p) + b"\n" for p in points)


class _Segment(NamedTuple):
    path: Path
    number: int
    points: int
    created_ns: int
    size: int


def _parse_name(path: Path) -> _Segment | None:
    try:
        number, points, created_ns = (int(p) for p in path.stem.split("-"))
    except ValueError:
        return None
    return _Segment(path, number, points, created_ns, path.stat().st_size)


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        on_drop: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        for stale in self._dir.glob("*.tmp"):  # a crash mid-append: that batch was never acked
            stale.unlink()
        found = (_parse_name(p) for p in self._dir.glob("*" + _SUFFIX))
        self._segments = sorted((s for s in found if s is not None), key=lambda s: s.number)
        self._next = self._segments[-1].number + 1 if self._segments else 1

    # -- state, for metrics and health ---------------------------------------------------
    @property
    def depth(self) -> int:
        """Points waiting."""
        with self._lock:
            return sum(s.points for s in self._segments)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    def oldest_created_ns(self) -> int | None:
        with self._lock:
            return self._segments[0].created_ns if self._segments else None

    def oldest_age_s(self, now: datetime) -> float:
        """How long the oldest batch has waited (0 when empty)."""
        oldest = self.oldest_created_ns()
        return 0.0 if oldest is None else max(0.0, now.timestamp() - oldest / 1e9)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._segments)

    # -- writing and replaying ------------------------------------------------------------
    def append(self, points: Sequence[Point], now: datetime) -> None:
        """Make `points` durable on disk; returns only once they are."""
        if not points:
            return
        data = _encode(points)
        created_ns = int(now.timestamp() * 1e9)
        with self._lock:
            number = self._next
            self._next += 1
            final = self._dir / f"{number:016d}-{len(points)}-{created_ns}{_SUFFIX}"
            self._write_atomic(final, data)
            self._fsync_dir()
            self._segments.append(_Segment(final, number, len(points), created_ns, len(data)))
            self._enforce_limit()

    def peek(self) -> tuple[int, list[Point]] | None:
        """The oldest segment's number and points, or None when empty."""
        oldest = self.oldest(1)
        return oldest[0] if oldest else None

    def oldest(self, max_points: int) -> list[tuple[int, list[Point]]]:
        """The oldest segments (number and points), as many as fit in `max_points` (at
        least one, whatever its size); empty when the spool is."""
        out: list[tuple[int, list[Point]]] = []
        taken = 0
        while True:
            with self._lock:
                if len(self._segments) <= len(out):
                    return out
                segment = self._segments[len(out)]
            if out and taken + segment.points > max_points:
                return out
            try:
                with open(segment.path, "rb") as f:
                    out.append((segment.number, [Point(*json.loads(line)) for line in f]))
                taken += segment.points
            except FileNotFoundError:
                self.remove(segment.number)  # the size limit dropped it meanwhile: next one

    def rewrite(self, number: int, points: Sequence[Point]) -> None:
        """Replace a segment's points with `points` (the part of it not yet written), in
        place: it keeps its turn. Atomic, like `append`."""
        data = _encode(points)
        with self._lock:
            for i, segment in enumerate(self._segments):
                if segment.number == number:
                    final = self._dir / f"{number:016d}-{len(points)}-{segment.created_ns}{_SUFFIX}"
                    self._write_atomic(final, data)
                    segment.path.unlink(missing_ok=True)
                    self._fsync_dir()
                    self._segments[i] = segment._replace(
                        path=final, points=len(points), size=len(data)
                    )
                    return

    def remove(self, number: int) -> None:
        """Forget a replayed segment (a no-op if the size limit dropped it meanwhile)."""
        with self._lock:
            for i, segment in enumerate(self._segments):
                if segment.number == number:
                    del self._segments[i]
                    segment.path.unlink(missing_ok=True)
                    return

    def _enforce_limit(self) -> None:
        total = sum(s.size for s in self._segments)
        while total > self._max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            oldest.path.unlink(missing_ok=True)
            total -= oldest.size
            self._on_drop(oldest.points)

    @staticmethod
    def _write_atomic(final: Path, data: bytes) -> None:
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(final)

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

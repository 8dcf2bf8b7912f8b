"""Frame identity: `(elevator_id, boot, seq)` seen before or not, in bounded memory.

Per elevator we keep the highest `seq` of the current and the previous boot, and a bitmap
of which of the `WINDOW` seqs below it have not been seen (one Python int: kept for the
fleet, so the bits are the exceptions: once a device has sent a window of frames in order it
is 0, which Python shares, and costs nothing). A frame older than
the window cannot be told apart and is let through (at-least-once rather than loss): with
one frame every 10 s the window covers about 40 minutes of reordering.
"""

from __future__ import annotations

from typing import Final, NamedTuple

WINDOW: Final = 256
_MASK: Final = (1 << WINDOW) - 1


class Verdict(NamedTuple):
    new: bool
    gap: int  # frames skipped between the previous highest seq and this one (0 if none)


_NEW: Final = Verdict(True, 0)
_SEEN: Final = Verdict(False, 0)


class _Boot:
    """One boot of one elevator; the current boot holds the one before it, if any."""

    __slots__ = ("boot", "high", "previous", "unseen")

    def __init__(self, boot: int, seq: int, previous: _Boot | None = None) -> None:
        self.boot = boot
        self.high = seq
        self.unseen = _MASK ^ 1  # bit i set: seq (high - i) has not been seen
        self.previous = previous

    def check(self, seq: int) -> Verdict:
        if seq > self.high:
            gap = seq - self.high - 1
            # Clamped: a seq far ahead (any int64 is valid) would make a bitmap as long.
            shift = min(gap + 1, WINDOW)
            skipped = (1 << shift) - 2  # the seqs between the old high and this one
            self.unseen = (self.unseen << shift | skipped) & _MASK
            self.high = seq
            return Verdict(True, gap) if gap else _NEW
        back = self.high - seq
        if back >= WINDOW:
            return _NEW
        bit = 1 << back
        if not self.unseen & bit:
            return _SEEN
        self.unseen ^= bit
        return _NEW


class Dedup:
    def __init__(self) -> None:
        self._boots: dict[str, _Boot] = {}  # elevator_id -> its current boot

    def __len__(self) -> int:
        return len(self._boots)

    def check(self, elevator_id: str, boot: int, seq: int) -> Verdict:
        current = self._boots.get(elevator_id)
        if current is None:
            self._boots[elevator_id] = _Boot(boot, seq)
            return _NEW
        if boot == current.boot:
            return current.check(seq)
        previous = current.previous
        if previous is not None and boot == previous.boot:
            return previous.check(seq)  # a late frame from before a reboot
        current.previous = None  # two boots are kept: the new one and this one
        self._boots[elevator_id] = _Boot(boot, seq, current)
        return _NEW

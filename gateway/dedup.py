"""Frame identity: `(elevator_id, boot, seq)` seen before or not, in bounded memory.

Per elevator we keep the highest `seq` of the current and the previous boot, and a bitmap
of which of the `WINDOW` seqs below it were seen (one small Python int). A frame older than
the window cannot be told apart and is let through (at-least-once rather than loss): with
one frame every 10 s the window covers about 40 minutes of reordering.
"""

from __future__ import annotations

from typing import Final, NamedTuple

WINDOW: Final = 256


class Verdict(NamedTuple):
    new: bool
    gap: int  # frames skipped between the previous highest seq and this one (0 if none)


class _Boot:
    __slots__ = ("boot", "high", "seen")

    def __init__(self, boot: int, seq: int) -> None:
        self.boot = boot
        self.high = seq
        self.seen = 1  # bit i set: seq (high - i) was seen

    def check(self, seq: int) -> Verdict:
        if seq > self.high:
            shift = seq - self.high
            gap = shift - 1
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1)
            self.high = seq
            return Verdict(True, gap)
        back = self.high - seq
        if back >= WINDOW:
            return Verdict(True, 0)
        bit = 1 << back
        if self.seen & bit:
            return Verdict(False, 0)
        self.seen |= bit
        return Verdict(True, 0)


class Dedup:
    def __init__(self) -> None:
        # elevator_id -> (current boot, previous boot or None)
        self._boots: dict[str, tuple[_Boot, _Boot | None]] = {}

    def __len__(self) -> int:
        return len(self._boots)

    def check(self, elevator_id: str, boot: int, seq: int) -> Verdict:
        known = self._boots.get(elevator_id)
        if known is None:
            self._boots[elevator_id] = (_Boot(boot, seq), None)
            return Verdict(True, 0)
        current, previous = known
        if boot == current.boot:
            return current.check(seq)
        if previous is not None and boot == previous.boot:
            return previous.check(seq)  # a late frame from before a reboot
        self._boots[elevator_id] = (_Boot(boot, seq), current)
        return Verdict(True, 0)

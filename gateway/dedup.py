"""Frame identity: `(elevator_id, boot, seq)` seen before or not, in bounded memory.

Per elevator we keep its boot, the highest `seq` of that boot, and a bitmap of which of the
`WINDOW` seqs below it have not been seen. Held for the whole fleet, so the three are packed
in one Python int: boot (offset to be unsigned) in the low 64 bits, the highest seq in the
next 64, the bitmap above them. The bits are the exceptions, so once a device has sent a
window of frames in order the bitmap is 0 and the int takes 48 bytes (80 while it is wide;
a record of its own with an int for each took 96 and 160). The boot before a reboot is kept
beside it, for late frames from before the reboot. A frame older than the window cannot be
told apart and is let through (at-least-once rather than loss): with one frame every 10 s
the window covers about 40 minutes of reordering.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

WINDOW: Final = 256
_MASK: Final = (1 << WINDOW) - 1
_FIELD: Final = 64  # bits of boot and of seq: each an int64 (seq >= 0)
_LOW: Final = (1 << _FIELD) - 1
_UNSEEN: Final = 2 * _FIELD  # where the bitmap starts
_BOOT_OFFSET: Final = 1 << (_FIELD - 1)  # a negative boot is valid


class Verdict(NamedTuple):
    new: bool
    gap: int  # frames skipped between the previous highest seq and this one (0 if none)


_NEW: Final = Verdict(True, 0)
_SEEN: Final = Verdict(False, 0)


def _started(boot: int, seq: int) -> int:
    """The state after a boot's first frame seen: every seq below it not seen yet."""
    return (_MASK ^ 1) << _UNSEEN | seq << _FIELD | (boot + _BOOT_OFFSET)


def _boot(state: int) -> int:
    return (state & _LOW) - _BOOT_OFFSET


def _checked(state: int, seq: int) -> tuple[Verdict, int]:
    """The verdict on `seq` within the boot of `state`, and the state after it."""
    high = state >> _FIELD & _LOW
    if seq > high:
        gap = seq - high - 1
        # Clamped: a seq far ahead (any int64 is valid) would make a bitmap as long.
        shift = min(gap + 1, WINDOW)
        skipped = (1 << shift) - 2  # the seqs between the old high and this one
        unseen = ((state >> _UNSEEN) << shift | skipped) & _MASK
        after = unseen << _UNSEEN | seq << _FIELD | state & _LOW
        return (Verdict(True, gap) if gap else _NEW), after
    back = high - seq
    if back >= WINDOW:
        return _NEW, state
    bit = 1 << (_UNSEEN + back)  # set: seq (high - back) has not been seen
    if not state & bit:
        return _SEEN, state
    return _NEW, state ^ bit


class Dedup:
    def __init__(self) -> None:
        self._current: dict[str, int] = {}  # elevator_id -> its current boot's state
        self._previous: dict[str, int] = {}  # the boot before, for elevators that rebooted

    def __len__(self) -> int:
        return len(self._current)

    def forget(self, elevator_ids: Iterable[str]) -> None:
        for elevator_id in elevator_ids:
            self._current.pop(elevator_id, None)
            self._previous.pop(elevator_id, None)

    def check(self, elevator_id: str, boot: int, seq: int) -> Verdict:
        current = self._current.get(elevator_id)
        if current is None:
            self._current[elevator_id] = _started(boot, seq)
            return _NEW
        if boot == _boot(current):
            verdict, self._current[elevator_id] = _checked(current, seq)
            return verdict
        previous = self._previous.get(elevator_id)
        if previous is not None and boot == _boot(previous):
            # A late frame from before a reboot.
            verdict, self._previous[elevator_id] = _checked(previous, seq)
            return verdict
        # Two boots are kept: the new one and this one.
        self._previous[elevator_id] = current
        self._current[elevator_id] = _started(boot, seq)
        return _NEW

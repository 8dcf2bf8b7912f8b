"""The black box: each elevator's last `WINDOW` of frames, so an incident can keep what led
up to it.

Held for every elevator in the fleet, so it is compact. An elevator's status frames are one
`bytes`: its newest frame's values, then its frames oldest first, each a step from the one
before. Most frames (the periodic ones) move only the clocks and seq: 8 bytes. A frame whose
flags or enumerations changed (a door, a passenger) takes 10, any other new status 16; the
oldest, and any step too large for its fields (received_at going back or 18 min on, a seq
going back or on by 128 or more, as a reboot's, a device clock jumping by more than 8 s),
is written in full, 33. A status is 8 bytes: the enumerations and flags in 16 bits (first,
so a step that changes only them compares the rest in one slice), the floor, the speed
rounded to the mm/s and the load to a hundredth of a percent. Events, which are rare, are
kept as small tuples beside it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.frames import EventBody, Frame, StatusBody, as_sent

WINDOW: Final = timedelta(seconds=120)
# Frames older than the window are dropped once the oldest is an eighth of a window (15 s)
# past it, a frame or two at once rather than one with every frame (2.3 against 2.8 µs a
# frame for `record` in steady state, on another machine). So a frame is held up to HELD.
# A quarter window dropped less often (about 0.6 µs a frame less) but held 120 bytes more
# per elevator whose status changes with every frame.
HELD: Final = WINDOW * 9 / 8
_WINDOW_US: Final = WINDOW // timedelta(microseconds=1)
_SLACK_US: Final = (HELD - WINDOW) // timedelta(microseconds=1)

_FLAGS: Final = ("moving", "door_zone", "occupied", "alarm_button")  # one bit each
_CHOICES: Final = (  # each the index of its value, in as few bits as its values need
    ("direction", ("up", "down", "none")),
    ("door", ("open", "opening", "closed", "closing", "fault")),
    ("mode", ("normal", "inspection", "maintenance", "fire", "independent", "out_of_service")),
    ("power", ("mains", "battery", "off")),
    ("safety_circuit", ("closed", "open")),
)


def _layout() -> tuple[tuple[str, tuple[str, ...], int, int], ...]:
    """(name, values, shift, mask) of each choice, after the flags' bits."""
    fields, shift = [], len(_FLAGS)
    for name, values in _CHOICES:
        bits = (len(values) - 1).bit_length()
        fields.append((name, values, shift, (1 << bits) - 1))
        shift += bits
    assert shift <= 16
    return tuple(fields)


_PACKED: Final = _layout()
# Per choice, its values' bits already shifted into place: packing is a lookup, not a search.
_DIRECTION, _DOOR, _MODE, _POWER, _SAFETY = (
    {v: i << shift for i, v in enumerate(values)} for _, values, shift, _ in _PACKED
)
# A status frame is stored as its received_at and device ts (µs), its seq, and its status:
# flags and choices, floor, speed (mm/s), load (0.01 %): each fits 16 bits (see StatusBody).
_STATUS: Final = struct.Struct("<HhHH")  # bytes 0-1: the flags and choices
_HEAD: Final = struct.Struct("<qqq8s")  # the newest frame, which the next one steps from
# Records, oldest first, each tagged in the low 2 bits of its first byte. A step is two
# words: the µs since the frame before (30 bits) above the tag; the change of the device
# clock's offset (ts - received_at) in µs (24 bits, signed) above the change of seq (8).
_FULL, _STEP, _STEP_STATUS, _STEP_CHOSEN = 0, 1, 2, 3
_RECORDS: Final = (
    struct.Struct("<Bqqq8s"),  # _FULL: the frame as a whole
    struct.Struct("<Ii"),  # _STEP: a step, the status as before
    struct.Struct("<Ii8s"),  # _STEP_STATUS: a step and a new status
    struct.Struct("<Ii2s"),  # _STEP_CHOSEN: a step and new flags and choices, nothing else
)
_FULL_RECORD, _STEP_RECORD, _STEP_STATUS_RECORD, _STEP_CHOSEN_RECORD = _RECORDS
_RX_STEP_LIMIT: Final = 1 << 30  # µs: 17.9 min
_OFFSET_STEP_LIMIT: Final = 1 << 23  # µs: 8.4 s either way
_SEQ_STEP_LIMIT: Final = 1 << 7


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _status(b: StatusBody) -> bytes:
    packed = (
        b.moving | b.door_zone << 1 | b.occupied << 2 | b.alarm_button << 3  # _FLAGS
        | _DIRECTION[b.direction] | _DOOR[b.door] | _MODE[b.mode] | _POWER[b.power]
        | _SAFETY[b.safety_circuit]
    )  # fmt: skip
    # Rounded to the nearest (both are >= 0).
    speed, load = int(b.speed_mps * 1000 + 0.5), int(b.load_pct * 100 + 0.5)
    return _STATUS.pack(packed, b.floor, speed, load)


def _appended(ring: bytes | None, rx: int, ts: int, seq: int, status: bytes) -> bytes:
    head = _HEAD.pack(rx, ts, seq, status)
    if ring is None:
        return head + _FULL_RECORD.pack(_FULL, rx, ts, seq, status)
    last_rx, last_ts, last_seq, last_status = _HEAD.unpack_from(ring)
    d_rx, d_offset, d_seq = rx - last_rx, (ts - rx) - (last_ts - last_rx), seq - last_seq
    if (
        0 <= d_rx < _RX_STEP_LIMIT
        and -_OFFSET_STEP_LIMIT <= d_offset < _OFFSET_STEP_LIMIT
        and -_SEQ_STEP_LIMIT <= d_seq < _SEQ_STEP_LIMIT
    ):
        offset_seq = d_offset << 8 | d_seq & 0xFF
        if status == last_status:
            record = _STEP_RECORD.pack(d_rx << 2 | _STEP, offset_seq)
        elif status[2:] == last_status[2:]:
            chosen = status[:2]  # floor, speed and load as before
            record = _STEP_CHOSEN_RECORD.pack(d_rx << 2 | _STEP_CHOSEN, offset_seq, chosen)
        else:
            record = _STEP_STATUS_RECORD.pack(d_rx << 2 | _STEP_STATUS, offset_seq, status)
    else:  # a step its fields cannot hold (see the module's docstring)
        record = _FULL_RECORD.pack(_FULL, rx, ts, seq, status)
    return head + ring[_HEAD.size :] + record


def _frames(ring: bytes) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Each status frame of a ring, oldest first: (its record's end, received_at µs, ts µs,
    seq, status)."""
    at, rx, ts, seq, status = _HEAD.size, 0, 0, 0, b""
    while at < len(ring):
        tag = ring[at] & 3
        if tag == _FULL:
            _, rx, ts, seq, status = _FULL_RECORD.unpack_from(ring, at)
        else:
            if tag == _STEP:
                rx_tag, offset_seq = _STEP_RECORD.unpack_from(ring, at)
            elif tag == _STEP_STATUS:
                rx_tag, offset_seq, status = _STEP_STATUS_RECORD.unpack_from(ring, at)
            else:
                rx_tag, offset_seq, chosen = _STEP_CHOSEN_RECORD.unpack_from(ring, at)
                status = chosen + status[2:]
            d_rx, d_offset, d_seq = rx_tag >> 2, offset_seq >> 8, (offset_seq & 0xFF ^ 0x80) - 0x80
            rx, ts, seq = rx + d_rx, ts + d_rx + d_offset, seq + d_seq
        at += _RECORDS[tag].size
        yield at, rx, ts, seq, status


def _trimmed(ring: bytes, cutoff_us: int) -> bytes:
    """Without the frames received before `cutoff_us` at its start (once the oldest is
    `_SLACK_US` older), the first one kept then written in full."""
    # The oldest record is always written in full: its received_at is at a fixed place.
    if _FULL_RECORD.unpack_from(ring, _HEAD.size)[1] >= cutoff_us - _SLACK_US:
        return ring
    # The newest frame is in its window, so there is one.
    end, rx, ts, seq, status = next(f for f in _frames(ring) if f[1] >= cutoff_us)
    return ring[: _HEAD.size] + _FULL_RECORD.pack(_FULL, rx, ts, seq, status) + ring[end:]


def _unpacked(rx: int, ts: int, seq: int, status: bytes, elevator_id: str) -> dict[str, Any]:
    packed, floor, speed, load = _STATUS.unpack(status)
    body: dict[str, Any] = {
        "elevator_id": elevator_id, "seq": seq, "ts": _at(ts).isoformat(), "floor": floor,
        **{name: values[packed >> shift & mask] for name, values, shift, mask in _PACKED},
        "speed_mps": speed / 1000, "load_pct": load / 100,
    }  # fmt: skip
    body.update({name: bool(packed >> n & 1) for n, name in enumerate(_FLAGS)})
    return {"received_at": _at(rx), "kind": "status", "body": body}


class BlackBox:
    def __init__(self) -> None:
        self._status: dict[str, bytes] = {}  # _HEAD, then the records oldest first
        self._events: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}

    def record(self, frame: Frame) -> None:
        body = frame.body
        if isinstance(body, StatusBody):
            received_us = _us(frame.received_at)
            ring = _appended(
                self._status.get(frame.elevator_id), received_us, _us(body.ts), body.seq,
                _status(body),
            )  # fmt: skip
            self._status[frame.elevator_id] = _trimmed(ring, received_us - _WINDOW_US)
        elif isinstance(body, EventBody):
            cutoff = frame.received_at - WINDOW
            events = self._events.setdefault(frame.elevator_id, [])
            events.append((frame.received_at, as_sent(frame)))
            events[:] = [e for e in events if e[0] >= cutoff]

    def recent(self, elevator_id: str, now: datetime) -> list[dict[str, Any]]:
        """The frames received from WINDOW before `now` on, oldest first. (Frames are held
        up to HELD after the newest, so for a `now` before the newest frame the window is
        whole too.)"""
        cutoff = now - WINDOW
        cutoff_us = _us(cutoff)
        ring = self._status.get(elevator_id, b"")
        frames = [
            _unpacked(rx, ts, seq, status, elevator_id)
            for _, rx, ts, seq, status in _frames(ring)
            if rx >= cutoff_us
        ]
        frames += [
            {"received_at": at, "kind": "event", "body": body}
            for at, body in self._events.get(elevator_id, [])
        ]
        return sorted(
            (f for f in frames if f["received_at"] >= cutoff), key=lambda f: f["received_at"]
        )

    def forget(self, elevator_ids: Iterable[str]) -> None:
        for elevator_id in elevator_ids:
            self._status.pop(elevator_id, None)
            self._events.pop(elevator_id, None)

    def last(self, elevator_id: str) -> dict[str, Any] | None:
        """The newest status frame seen, however old."""
        ring = self._status.get(elevator_id)
        if ring is None:
            return None
        return _unpacked(*_HEAD.unpack_from(ring), elevator_id)

"""The black box: each elevator's last `WINDOW` of frames, so an incident can keep what led
up to it.

Held for every elevator in the fleet, so it is compact: one `bytes` per elevator of fixed
36-byte status records, the enumerations and flags of a frame packed into 16 bits (events,
which are rare, are kept as small tuples beside it).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.frames import EventBody, Frame, StatusBody, as_sent

WINDOW: Final = timedelta(seconds=120)
_WINDOW_US: Final = WINDOW // timedelta(microseconds=1)

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
# received_at µs, device ts µs, seq, floor, flags and choices, speed, load
_RECORD: Final = struct.Struct("<qqqhHff")


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _pack(received_us: int, b: StatusBody) -> bytes:
    packed = (
        b.moving | b.door_zone << 1 | b.occupied << 2 | b.alarm_button << 3  # _FLAGS
        | _DIRECTION[b.direction] | _DOOR[b.door] | _MODE[b.mode] | _POWER[b.power]
        | _SAFETY[b.safety_circuit]
    )  # fmt: skip
    return _RECORD.pack(received_us, _us(b.ts), b.seq, b.floor, packed, b.speed_mps, b.load_pct)


def _unpack(record: bytes, elevator_id: str) -> dict[str, Any]:
    rx, ts, seq, floor, packed, speed, load = _RECORD.unpack(record)
    body: dict[str, Any] = {
        "elevator_id": elevator_id, "seq": seq, "ts": _at(ts).isoformat(), "floor": floor,
        **{name: values[packed >> shift & mask] for name, values, shift, mask in _PACKED},
        "speed_mps": round(speed, 3), "load_pct": round(load, 2),
    }  # fmt: skip
    body.update({name: bool(packed >> n & 1) for n, name in enumerate(_FLAGS)})
    return {"received_at": _at(rx), "kind": "status", "body": body}


class BlackBox:
    def __init__(self) -> None:
        self._status: dict[str, bytes] = {}  # records oldest first
        self._events: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}

    def record(self, frame: Frame) -> None:
        body = frame.body
        if isinstance(body, StatusBody):
            received_us = _us(frame.received_at)
            ring = self._status.get(frame.elevator_id, b"") + _pack(received_us, body)
            self._status[frame.elevator_id] = self._trimmed(ring, received_us - _WINDOW_US)
        elif isinstance(body, EventBody):
            cutoff = frame.received_at - WINDOW
            events = self._events.setdefault(frame.elevator_id, [])
            events.append((frame.received_at, as_sent(frame)))
            events[:] = [e for e in events if e[0] >= cutoff]

    def recent(self, elevator_id: str, now: datetime) -> list[dict[str, Any]]:
        """The frames of the last WINDOW before `now`, oldest first."""
        cutoff = now - WINDOW
        ring = self._status.get(elevator_id, b"")
        size = _RECORD.size
        frames = [_unpack(ring[i : i + size], elevator_id) for i in range(0, len(ring), size)]
        frames += [
            {"received_at": at, "kind": "event", "body": body}
            for at, body in self._events.get(elevator_id, [])
        ]
        return sorted(
            (f for f in frames if f["received_at"] >= cutoff), key=lambda f: f["received_at"]
        )

    def last(self, elevator_id: str) -> dict[str, Any] | None:
        """The newest status frame seen, however old."""
        ring = self._status.get(elevator_id)
        if not ring:
            return None
        return _unpack(ring[-_RECORD.size :], elevator_id)

    @staticmethod
    def _trimmed(ring: bytes, cutoff_us: int) -> bytes:
        size = _RECORD.size
        drop = 0
        while drop < len(ring) and _RECORD.unpack_from(ring, drop)[0] < cutoff_us:
            drop += size
        return ring[drop:] if drop else ring

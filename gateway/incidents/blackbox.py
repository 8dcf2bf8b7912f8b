"""The black box: each elevator's last `WINDOW` of frames, so an incident can keep what led
up to it.

Held for every elevator in the fleet, so it is compact: one `bytearray` per elevator of
fixed 40-byte status records (events, which are rare, are kept as small tuples beside it).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.frames import EventBody, Frame, StatusBody

WINDOW: Final = timedelta(seconds=120)

_DIRECTIONS: Final = ("up", "down", "none")
_DOORS: Final = ("open", "opening", "closed", "closing", "fault")
_MODES: Final = ("normal", "inspection", "maintenance", "fire", "independent", "out_of_service")
_POWER: Final = ("mains", "battery", "off")
_SAFETY: Final = ("closed", "open")
# received_at µs, device ts µs, seq, floor, flags, direction, door, mode, power, safety, pad,
# speed, load
_RECORD: Final = struct.Struct("<qqqhBBBBBBxxff")
_FLAGS: Final = ("moving", "door_zone", "occupied", "alarm_button")


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _pack(received_at: datetime, b: StatusBody) -> bytes:
    flags = sum(1 << n for n, name in enumerate(_FLAGS) if getattr(b, name))
    return _RECORD.pack(
        _us(received_at), _us(b.ts), b.seq, b.floor, flags,
        _DIRECTIONS.index(b.direction), _DOORS.index(b.door), _MODES.index(b.mode),
        _POWER.index(b.power), _SAFETY.index(b.safety_circuit), b.speed_mps, b.load_pct,
    )  # fmt: skip


def _unpack(record: bytes, elevator_id: str) -> dict[str, Any]:
    (rx, ts, seq, floor, flags, direction, door, mode, power, safety, speed, load) = _RECORD.unpack(
        record
    )
    body: dict[str, Any] = {
        "elevator_id": elevator_id, "seq": seq, "ts": _at(ts).isoformat(), "floor": floor,
        "direction": _DIRECTIONS[direction], "door": _DOORS[door], "mode": _MODES[mode],
        "power": _POWER[power], "safety_circuit": _SAFETY[safety],
        "speed_mps": round(speed, 3), "load_pct": round(load, 2),
    }  # fmt: skip
    body.update({name: bool(flags >> n & 1) for n, name in enumerate(_FLAGS)})
    return {"received_at": _at(rx), "kind": "status", "body": body}


class BlackBox:
    def __init__(self) -> None:
        self._status: dict[str, bytearray] = {}
        self._events: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}

    def record(self, frame: Frame) -> None:
        body = frame.body
        cutoff = frame.received_at - WINDOW
        if isinstance(body, StatusBody):
            ring = self._status.setdefault(frame.elevator_id, bytearray())
            ring += _pack(frame.received_at, body)
            self._trim(ring, _us(cutoff))
        elif isinstance(body, EventBody):
            events = self._events.setdefault(frame.elevator_id, [])
            events.append((frame.received_at, body.model_dump(mode="json")))
            events[:] = [e for e in events if e[0] >= cutoff]

    def recent(self, elevator_id: str, now: datetime) -> list[dict[str, Any]]:
        """The frames of the last WINDOW before `now`, oldest first."""
        cutoff = now - WINDOW
        ring = self._status.get(elevator_id, bytearray())
        size = _RECORD.size
        frames = [
            _unpack(bytes(ring[i : i + size]), elevator_id) for i in range(0, len(ring), size)
        ]
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
        return _unpack(bytes(ring[-_RECORD.size :]), elevator_id)

    @staticmethod
    def _trim(ring: bytearray, cutoff_us: int) -> None:
        size = _RECORD.size
        drop = 0
        while drop < len(ring) and _RECORD.unpack_from(ring, drop)[0] < cutoff_us:
            drop += size
        if drop:
            del ring[:drop]

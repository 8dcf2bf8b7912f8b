"""A controller's terminal that speaks a device profile instead of the contract.

Built from the profile file itself, read backwards: each contract field is written at its
path (through the inverse of its map, or divided by its scale; constants are not sent),
the time in the profile's format and zone, and raised and cleared events become the set of
vendor fault numbers active now, sent in every frame (a change is sent at once, with the
last status). A catalogue code the profile cannot express (no number maps to it) is not
sent, as such a terminal would not; `X_<number>` goes back to the number. A value a map
cannot express (mode `independent` in lift-numeric) is sent as its first entry. The terminal has
its own frame counter (events are not frames of their own here), restarting with each boot.
`online` stays on the contract's topic: it is the connection's last will.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.profiles import Profile
from gateway.profiles.spec import ID_PLACEHOLDER, STATUS_FIELDS
from simulators.device import Emitted
from simulators.misbehave import Message, to_message


def _put(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        payload = payload.setdefault(part, {})
    payload[leaf] = value


class ProfileSpeaker:
    def __init__(self, profile: Profile, elevator_id: str) -> None:
        assert profile.topic and profile.ts and profile.status and profile.elevator_id
        self.profile = profile
        self.elevator_id = elevator_id
        self.topic = profile.topic.replace(ID_PLACEHOLDER, elevator_id)
        self._zone = ZoneInfo(profile.ts.zone) if profile.ts.zone else None
        self._writers = [
            (src.path, name, {v: k for k, v in reversed(src.map.items())} if src.map else None,
             next(iter(src.map)) if src.map else None, src.scale)
            for name in STATUS_FIELDS if (src := profile.status[name]).path is not None
        ]  # fmt: skip
        faults = profile.faults
        self._numbers: dict[str, int | str] = {}
        if faults is not None:
            for vendor, code in reversed(faults.codes.items()):  # the first listed wins
                self._numbers[code] = vendor
        self._active: dict[str, int | str] = {}  # catalogue code -> the number sent for it
        self._last: dict[str, Any] | None = None  # the last status body
        self._boot: int | None = None
        self._seq = 0

    def messages(self, frames: list[Emitted]) -> list[Message]:
        out = []
        for frame in frames:
            if frame.kind == "online" or frame.body is None:
                out.append(to_message(frame))
            elif frame.kind == "status":
                self._last = frame.body
                out.append(self._message(frame.body))
            elif self._changes_faults(frame.body) and self._last is not None:
                out.append(self._message({**self._last, "ts": frame.body["ts"]}))
        return out

    def _changes_faults(self, event: dict[str, Any]) -> bool:
        code = event["code"]
        number = self._numbers.get(code)
        if number is None and code.startswith("X_") and code[2:].isdigit():
            number = int(code[2:])
        if number is None or self.profile.faults is None:
            return False
        if event["state"] == "raised" and code not in self._active:
            self._active[code] = number
            return True
        if event["state"] == "cleared" and code in self._active:
            del self._active[code]
            return True
        return False

    def _message(self, status: dict[str, Any]) -> Message:
        p = self.profile
        assert p.ts is not None and p.elevator_id is not None and p.elevator_id.path
        assert p.seq is not None and p.boot is not None
        if status["boot"] != self._boot:
            self._boot, self._seq = status["boot"], 0
        payload: dict[str, Any] = {}
        _put(payload, p.elevator_id.path, self.elevator_id)
        if p.seq.path is not None:
            _put(payload, p.seq.path, self._seq)
        if p.boot.path is not None:
            _put(payload, p.boot.path, self._boot)
        _put(payload, p.ts.path, self._time(datetime.fromisoformat(status["ts"])))
        for path, name, inverse, first, scale in self._writers:
            value = status[name]
            if inverse is not None:
                value = inverse.get(value, first)
            elif scale is not None:
                value = value / scale
            _put(payload, path, value)
        if p.faults is not None:
            _put(payload, p.faults.path, list(dict.fromkeys(self._active.values())))
        self._seq += 1
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Message(self.elevator_id, self.topic, body)

    def _time(self, at: datetime) -> str | float:
        spec = self.profile.ts
        assert spec is not None
        if spec.format == "rfc3339":
            return at.isoformat(timespec="milliseconds")
        if spec.format in ("epoch_s", "epoch_ms"):
            return at.timestamp() * (1000 if spec.format == "epoch_ms" else 1)
        return at.astimezone(self._zone).strftime(spec.format)

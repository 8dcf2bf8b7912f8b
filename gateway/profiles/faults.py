"""Fault sets to events: a profile whose devices report the faults active now (not raise and
clear events) gets, per elevator, a `raised` event for each code that appears and a
`cleared` event for each that disappears, so rules and incidents see what a contract device
would send.

Only a frame newer than the last one applied changes the set (same boot and a higher seq, or
a new boot; a late frame of the boot before is ignored), so a redelivery or a reordered
frame never raises or clears anything. The sets survive a restart: the worker takes a
snapshot with each batch (`take_snapshot`), and the writer saves it once the batch's points
are durable and before its messages are acknowledged (`save`). What was processed after the
last save is still unacknowledged, so it comes again (broker or journal) and is applied
again onto the saved sets: a fault active across a restart is not raised twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import structlog

from gateway.frames import EventBody, Frame, StatusBody
from gateway.profiles.mapping import MappedFrame

log = structlog.get_logger(__name__)

Active = dict[str, tuple[int | str, ...]]  # catalogue code -> the vendor codes behind it
_NONE: Final[list[Frame]] = []


class FaultSets:
    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._active: dict[str, Active] = _load(path) if path is not None else {}
        # elevator -> (boot, seq) of the last frame applied, and the boot before it
        self._last: dict[str, tuple[int, int, int | None]] = {}
        self._changed = False

    def active(self, elevator_id: str) -> Active:
        return self._active.get(elevator_id, {})

    def events(self, frame: MappedFrame) -> list[Frame]:
        """The raise and clear events the frame's fault set means (none if it is not newer
        than the last frame applied)."""
        body = frame.body
        assert isinstance(body, StatusBody) and frame.faults is not None
        eid = frame.elevator_id
        last = self._last.get(eid)
        if last is None:
            self._last[eid] = (body.boot, body.seq, None)
        elif body.boot == last[0]:
            if body.seq <= last[1]:
                return _NONE
            self._last[eid] = (body.boot, body.seq, last[2])
        elif body.boot == last[2]:
            return _NONE  # a late frame from before the device rebooted
        else:
            self._last[eid] = (body.boot, body.seq, last[0])
        now, before = frame.faults, self._active.get(eid, {})
        if now == before:
            return _NONE
        if now:
            self._active[eid] = now
        else:
            self._active.pop(eid, None)
        self._changed = True

        def event(code: str, state: str, vendor: tuple[int | str, ...]) -> Frame:
            detail = {"profile": frame.profile, "vendor_codes": list(vendor)}
            return Frame(
                kind="event", elevator_id=eid, received_at=frame.received_at,
                body=EventBody(v=1, elevator_id=eid, seq=body.seq, boot=body.boot, ts=body.ts,
                               code=code, state=state, detail=detail),
                lag_s=frame.lag_s,
            )  # fmt: skip

        return [event(c, "raised", v) for c, v in now.items() if c not in before] + [
            event(c, "cleared", v) for c, v in before.items() if c not in now
        ]

    def take_snapshot(self) -> dict[str, Active] | None:
        """The sets as they are, if they changed since the last snapshot (a shallow copy:
        each elevator's set is replaced, never changed in place)."""
        if not self._changed:
            return None
        self._changed = False
        return dict(self._active)

    def save(self, snapshot: Mapping[str, Active]) -> None:
        """Write a snapshot durably: a new file renamed over the old one."""
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        data = {eid: {c: list(v) for c, v in active.items()} for eid, active in snapshot.items()}
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _load(path: Path) -> dict[str, Active]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {eid: {c: tuple(v) for c, v in active.items()} for eid, active in data.items()}

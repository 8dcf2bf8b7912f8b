"""The car controller's telemetry: what it sends, when, and with which `seq` and `boot`.

Status goes out periodically and on every change of a `CHANGE_FIELDS` field (contract §1);
status and event frames share one `seq` counter; a reboot picks a new `boot` (the boot
time in milliseconds) and restarts `seq` at 0. The controller is stepped in simulated
seconds since the fleet's epoch; `ts` is that instant on the controller's own time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from simulators.car import MAX_MOVING_STEP_S, Car

Kind = Literal["status", "event", "online"]


@dataclass(frozen=True, slots=True)
class Emitted:
    """One frame as the controller means it, before it meets the network."""

    kind: Kind
    elevator_id: str
    body: dict[str, Any] | None  # None for `online`
    online: bool | None = None


class Device:
    def __init__(
        self,
        elevator_id: str,
        car: Car,
        epoch: datetime,
        tz: tzinfo,
        boot: int,
        status_interval_s: float,
        first_status_s: float = 0.0,
    ) -> None:
        self.elevator_id = elevator_id
        self.car = car
        self.epoch = epoch
        self.tz = tz
        self.boot = boot
        self.seq = 0
        self.status_interval_s = status_interval_s
        self._t = 0.0
        # Periodic frames of many cars are spread over the interval rather than all at once.
        self._next_periodic = first_status_s
        self._last_sent: tuple[Any, ...] | None = None
        self.outbox: list[Emitted] = []

    def time(self, t: float) -> datetime:
        return (self.epoch + timedelta(seconds=t)).astimezone(self.tz)

    def advance(self, t: float) -> None:
        """Run the car up to `t` and queue the status frames that period calls for."""
        while self._t < t - 1e-9:
            busy = self.car.moving or self.car.target is not None
            h = min(t - self._t, MAX_MOVING_STEP_S) if busy else t - self._t
            self.car.step(h)
            self._t += h
            self._observe()
        self._t = t

    def _observe(self) -> None:
        key = self.car.change_key()
        if key != self._last_sent or self._t >= self._next_periodic:
            self._last_sent = key
            self._next_periodic = self._t + self.status_interval_s
            self._emit("status", self.car.status())

    def raise_event(self, code: str, detail: dict[str, Any] | None = None) -> None:
        self._event(code, "raised", detail)

    def clear_event(self, code: str, detail: dict[str, Any] | None = None) -> None:
        self._event(code, "cleared", detail)

    def _event(self, code: str, state: str, detail: dict[str, Any] | None) -> None:
        fields: dict[str, Any] = {"code": code, "state": state}
        if detail is not None:
            fields["detail"] = detail
        self._emit("event", fields)

    def _emit(self, kind: Kind, fields: dict[str, Any]) -> None:
        body = {
            "v": 1,
            "elevator_id": self.elevator_id,
            "seq": self.seq,
            "boot": self.boot,
            "ts": self.time(self._t).isoformat(timespec="milliseconds"),
            **fields,
        }
        self.seq += 1
        self.outbox.append(Emitted(kind, self.elevator_id, body))

    def set_online(self, online: bool) -> None:
        self.outbox.append(Emitted("online", self.elevator_id, None, online))

    def reboot(self) -> None:
        """The controller restarts: its connection drops (last will), it comes back with a
        new boot id, `seq` from 0, and reports its status at once."""
        self.set_online(False)
        self.boot = max(self.boot + 1, int(self.time(self._t).timestamp() * 1000))
        self.seq = 0
        self.set_online(True)
        self._last_sent = None
        self._observe()

    def take(self) -> list[Emitted]:
        out, self.outbox = self.outbox, []
        return out

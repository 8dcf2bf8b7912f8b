"""Misbehaving devices: the broken firmware and flaky links the gateway must survive.

Each misbehaviour is switched on by a probability per frame (or, for clock skew and
bursts, per device). The frames a device means to send still get their `seq`; a corrupted
one is lost to the gateway as it would be in the field. Every message carries the name of
what was done to it, so tests and counters know what the gateway should make of it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from simulators.device import Emitted

MISBEHAVIOURS: Final = (
    "duplicates",
    "reorder",
    "clock_skew",
    "burst",
    "malformed_json",
    "wrong_types",
    "spoofed_id",
    "oversized",
)
# What the gateway's decoder answers to each corruption (gateway.frames.REASONS).
EXPECTED_REJECTION: Final = {
    "malformed_json": "bad_json",
    "wrong_types": "wrong_type",
    "spoofed_id": "spoofed_id",
    "oversized": "oversized",
}
OVERSIZE_BYTES: Final = 70 * 1024  # beyond the gateway's 64 KiB limit


@dataclass(frozen=True)
class MisbehaveConfig:
    devices: float = 0.0  # share of the fleet that misbehaves; the rest is well-behaved
    duplicates: float = 0.05  # probability per frame
    reorder: float = 0.05
    malformed_json: float = 0.01
    wrong_types: float = 0.01
    spoofed_id: float = 0.01
    oversized: float = 0.005
    clock_skew_s: float = 0.0  # the device's clock is this far off (the gateway flags > 300)
    burst_every_s: float = 0.0  # mean time between connection losses (0: never)
    burst_offline_s: float = 120.0  # frames held while offline, then sent at once

    def __post_init__(self) -> None:
        for name in ("devices", *EXPECTED_REJECTION, "duplicates", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"misbehave.{name} must be a probability in 0..1")
        if sum(getattr(self, name) for name in EXPECTED_REJECTION) > 1.0:
            raise ValueError("misbehave: the corruption probabilities add up to more than 1")

    def only(self, names: list[str], devices: float) -> MisbehaveConfig:
        """This config with just `names` switched on, on a `devices` share of the fleet."""
        if unknown := set(names) - set(MISBEHAVIOURS):
            raise ValueError(f"unknown misbehaviour {sorted(unknown)[0]!r}")
        off = {n: 0.0 for n in ("duplicates", "reorder", *EXPECTED_REJECTION) if n not in names}
        if "clock_skew" in names and not self.clock_skew_s:
            off["clock_skew_s"] = 420.0
        elif "clock_skew" not in names:
            off["clock_skew_s"] = 0.0
        if "burst" in names and not self.burst_every_s:
            off["burst_every_s"] = 3600.0
        elif "burst" not in names:
            off["burst_every_s"] = 0.0
        return MisbehaveConfig(**{**self.__dict__, **off, "devices": devices})


@dataclass(frozen=True, slots=True)
class Message:
    """What goes on the wire."""

    elevator_id: str
    topic: str
    payload: bytes
    retain: bool = False
    misbehaviour: str | None = None


def to_message(
    frame: Emitted, body: dict[str, Any] | None = None, tag: str | None = None
) -> Message:
    topic = f"elevators/{frame.elevator_id}/{frame.kind}"
    if frame.kind == "online":
        return Message(frame.elevator_id, topic, b"1" if frame.online else b"0", True, tag)
    payload = json.dumps(body or frame.body, separators=(",", ":")).encode()
    return Message(frame.elevator_id, topic, payload, False, tag)


class Misbehaviour:
    """The faulty firmware of one device, between the controller and the network."""

    def __init__(
        self, elevator_id: str, cfg: MisbehaveConfig, rng: random.Random, neighbour_id: str
    ) -> None:
        self.elevator_id = elevator_id
        self.cfg = cfg
        self._rng = rng
        self._neighbour = neighbour_id  # whose id a spoofed frame claims
        self._held: Message | None = None  # a frame held back to be sent out of order
        self._offline: list[Message] | None = None  # frames held while disconnected
        self._back_at = 0.0
        self._next_outage = self._outage_after(0.0)

    def _outage_after(self, now: float) -> float:
        every = self.cfg.burst_every_s
        return now + self._rng.expovariate(1 / every) if every > 0 else float("inf")

    def _online(self, online: bool) -> Message:
        return to_message(Emitted("online", self.elevator_id, None, online))

    def apply(self, frames: list[Emitted], now: float) -> list[Message]:
        """The messages that reach the network at `now` for the frames the device made."""
        out = [m for frame in frames for m in self._one(frame)]
        if self._offline is None and now >= self._next_outage:
            self._offline, self._back_at = [], now + self.cfg.burst_offline_s
            return [self._online(False)]  # the broker publishes the last will
        if self._offline is None:
            return out
        self._offline.extend(out)
        if now < self._back_at:
            return []
        # Reconnected: everything held goes out at once, as a device's flash buffer does.
        burst = [
            Message(m.elevator_id, m.topic, m.payload, m.retain, "burst") for m in self._offline
        ]
        self._offline = None
        self._next_outage = self._outage_after(now)
        return [self._online(True), *burst]

    def _one(self, frame: Emitted) -> list[Message]:
        if frame.body is None:
            return [to_message(frame)]
        body, tag = self._distort(frame)
        message = to_message(frame, body, tag)
        if tag == "malformed_json":  # cut off mid-object, as a lost buffer tail would
            cut = self._rng.randrange(1, len(message.payload) - 1)
            message = Message(message.elevator_id, message.topic, message.payload[:cut], False, tag)
        out = [message]
        if self._rng.random() < self.cfg.duplicates:
            out.append(
                Message(message.elevator_id, message.topic, message.payload, False, "duplicates")
            )
        if self._held is not None:
            out.append(self._held)  # the frame held back goes out after a later one
            self._held = None
        elif self._rng.random() < self.cfg.reorder:
            self._held = Message(
                message.elevator_id, message.topic, message.payload, False, "reorder"
            )
            out.remove(message)
        return out

    def _distort(self, frame: Emitted) -> tuple[dict[str, Any], str | None]:
        assert frame.body is not None
        body = dict(frame.body)
        tag: str | None = None
        if self.cfg.clock_skew_s:
            ts = datetime.fromisoformat(body["ts"]) + timedelta(seconds=self.cfg.clock_skew_s)
            body["ts"] = ts.isoformat(timespec="milliseconds")
            tag = "clock_skew"
        draw = self._rng.random()
        for name in EXPECTED_REJECTION:
            p = getattr(self.cfg, name)
            if draw < p:
                return self._corrupt(name, body), name
            draw -= p
        return body, tag

    def _corrupt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name == "wrong_types":
            # Firmware that sends numbers and booleans as strings; strict decoding rejects them.
            field = self._rng.choice([f for f in ("seq", "boot", "floor", "moving") if f in body])
            return {**body, field: str(body[field]).lower()}
        if name == "spoofed_id":
            return {**body, "elevator_id": self._neighbour}
        if name == "oversized":
            return {**body, "debug_dump": "x" * OVERSIZE_BYTES}
        return body  # malformed_json is cut after serialisation

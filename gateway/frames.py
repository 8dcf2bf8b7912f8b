"""The wire contract (contract.md §1) as types, and the one function that decodes a message.

`decode(topic, payload, received_at)` never raises: it returns a `Frame` or a `Rejected`
that says why, in one of the `REASONS` below. Bodies are parsed and validated in one pass by
msgspec (about three times pydantic's speed here, on the path every frame takes); unknown
extra fields are not on the body but kept in the frame's `payload`, as sent (`as_sent`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec import Meta
from pydantic import Field

MAX_PAYLOAD_BYTES: Final = 64 * 1024
INT64_MAX: Final = 2**63 - 1
# Device clocks further off than this are not plausible: the frame is rejected, not just
# flagged (skew beyond 5 minutes is only flagged, by the pipeline).
MAX_FUTURE_S: Final = timedelta(days=1).total_seconds()
MAX_PAST_S: Final = timedelta(days=30).total_seconds()

ELEVATOR_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# For the HTTP API's and the rule files' (pydantic) models.
ElevatorId = Annotated[str, Field(pattern=f"^{ELEVATOR_ID_RE.pattern}$")]

# Fault catalogue codes (domain.md). Vendor codes start with `X_`.
FAULT_CODES: Final = frozenset(
    {
        "ENTRAPMENT",
        "ALARM_BUTTON",
        "STOP_OUTSIDE_DOOR_ZONE",
        "DOOR_OPEN_WHILE_MOVING",
        "UNINTENDED_MOVEMENT",
        "OVERSPEED",
        "OVERTRAVEL_TOP",
        "OVERTRAVEL_BOTTOM",
        "SAFETY_CIRCUIT_OPEN",
        "DOOR_LOCK_FAULT",
        "DOOR_FAIL_TO_OPEN",
        "DOOR_FAIL_TO_CLOSE",
        "DOOR_REPEATED_CYCLING",
        "POWER_FAILURE",
        "CONTROLLER_FAULT",
        "CREW_ON_SITE",
        "ALARM_TEST",  # the alarm device's automatic test call (EN 81-28): opens nothing
    }
)
VENDOR_CODE_RE: Final = re.compile(r"X_[A-Z0-9_]{1,60}")

MAX_DEPTH: Final = 16  # nesting of an event's free-form `detail`

# Every reason a message can be rejected for; each is a label of the rejection counter.
REASONS: Final = (
    "bad_topic",
    "rate_limited",
    "oversized",
    "bad_encoding",
    "bad_json",
    "too_deep",
    "bad_id",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_enum",
    "out_of_range",
    "unsupported_version",
    "bad_timestamp",
    "timestamp_out_of_range",
    "spoofed_id",
    "bad_online_payload",
    # Not the message's fault: the time-series store refused its point (HTTP 4xx).
    "tsdb_refused",
)

_UNKNOWN_CODE: Final = "unknown fault code (not in the catalogue, no X_ prefix)"
_TOO_DEEP: Final = f"nested deeper than {MAX_DEPTH} levels"


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# Strict, as msgspec is: a device that sends "1" for an int or "true" for a bool is broken and
# is told so. NaN and Infinity are not JSON; a number too large for a float is out of range.
class _Body(msgspec.Struct, frozen=True, gc=False):
    v: Literal[1]
    # \Z, not $: msgspec matches with Python's re, whose $ also matches before a final newline.
    elevator_id: Annotated[str, Meta(pattern=rf"^{ELEVATOR_ID_RE.pattern}\Z")]
    seq: Annotated[int, Meta(ge=0, le=INT64_MAX)]
    boot: Annotated[int, Meta(ge=-INT64_MAX - 1, le=INT64_MAX)]
    ts: Annotated[datetime, Meta(tz=True)]


class StatusBody(_Body, frozen=True, gc=False):
    floor: Annotated[int, Meta(ge=-50, le=300)]
    moving: bool
    direction: Literal["up", "down", "none"]
    speed_mps: Annotated[float, Meta(ge=0, le=30)]
    door: Literal["open", "opening", "closed", "closing", "fault"]
    door_zone: bool
    occupied: bool
    load_pct: Annotated[float, Meta(ge=0, le=150)]
    mode: Literal["normal", "inspection", "maintenance", "fire", "independent", "out_of_service"]
    alarm_button: bool
    power: Literal["mains", "battery", "off"]
    safety_circuit: Literal["closed", "open"]


class EventBody(_Body, frozen=True):
    code: str
    state: Literal["raised", "cleared"]
    detail: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.code not in FAULT_CODES and not VENDOR_CODE_RE.fullmatch(self.code):
            raise ValueError(_UNKNOWN_CODE)
        if self.detail is not None and _depth(self.detail) > MAX_DEPTH:
            raise ValueError(_TOO_DEEP)


Kind = Literal["status", "event", "online"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)


@dataclass(slots=True)  # not frozen: one per message, and frozen costs 3x to build
class Frame:
    """A valid frame: the body as sent plus what the gateway knows about its arrival."""

    kind: Kind
    elevator_id: str
    received_at: datetime
    body: StatusBody | EventBody | None  # None for `online`
    online: bool | None = None  # only for `online`
    payload: bytes = b""  # the message as sent (b"" for frames made up by rule test cases)
    # received_at minus the device's ts, seconds (0 for `online`): time in transit plus the
    # device clock's error. Computed once by decode for the checks and the stored rx_lag_ms.
    lag_s: float = 0.0


def as_sent(frame: Frame) -> dict[str, Any]:
    """The frame's body as the device sent it, extra fields included."""
    if frame.body is None:
        return {"online": frame.online}
    if frame.payload:
        return json.loads(frame.payload)  # type: ignore[no-any-return]
    return msgspec.to_builtins(frame.body)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # one of REASONS
    detail: str
    topic: str
    payload: bytes
    received_at: datetime
    elevator_id: str | None  # from the topic, when it names one


_DECODERS: Final = {
    "status": msgspec.json.Decoder(StatusBody),
    "event": msgspec.json.Decoder(EventBody),
}


def elevator_of(topic: str) -> str | None:
    """The elevator a topic names, if it is one of ours (checked again, fully, by decode)."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "elevators" and ELEVATOR_ID_RE.fullmatch(parts[1]):
        # Interned: every per-elevator table of the gateway then shares one key object.
        return sys.intern(parts[1])
    return None


def decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    elevator_id: str | None = None,
) -> Frame | Rejected:
    """Turn one MQTT message into a valid `Frame` or a `Rejected` with its reason.
    `elevator_id`: `elevator_of(topic)`, when the caller has it already (the hot path)."""
    elevator_id = elevator_id or elevator_of(topic)
    if elevator_id is None:
        return Rejected(
            "bad_topic",
            f"not elevators/{{id}}/{{kind}}: {topic[:200]!r}",
            topic,
            payload,
            received_at,
            None,
        )
    kind = topic.rsplit("/", 1)[1]

    def reject(reason: str, detail: str) -> Rejected:
        return Rejected(reason, detail, topic, payload, received_at, elevator_id)

    if len(payload) > max_bytes:
        return reject("oversized", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    if kind == "online":
        if payload in (b"1", b"0"):
            return Frame("online", elevator_id, received_at, None, online=payload == b"1")
        return reject("bad_online_payload", "online payload must be the text 1 or 0")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        return reject("bad_topic", f"unknown topic kind {kind!r} (status, event or online)")

    if not payload.isascii():  # the usual frame is ASCII: checked without a copy
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return reject("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        body = decoder.decode(payload)
    except msgspec.ValidationError as exc:  # a DecodeError too: first
        return reject(*_explain(str(exc)))
    except msgspec.DecodeError as exc:
        return reject("bad_json", str(exc))
    except RecursionError:
        return reject("too_deep", "nested too deeply to parse")
    if body.elevator_id != elevator_id:
        return reject("spoofed_id", f"body elevator_id {body.elevator_id!r} is not the topic's")
    lag = (received_at - body.ts).total_seconds()
    if -lag > MAX_FUTURE_S or lag > MAX_PAST_S:
        return reject(
            "timestamp_out_of_range", f"ts {body.ts.isoformat()} is implausibly far from now"
        )
    return Frame(kind, elevator_id, received_at, body, None, payload, lag)  # type: ignore[arg-type]


_AT: Final = " - at `$."
_MISSING: Final = re.compile(r"Object missing required field `([^`]*)`")
_RANGE: Final = re.compile(r"Expected `\w+` (?:>=|<=|>|<) |Number out of range|of length")


def _explain(message: str) -> tuple[str, str]:
    """msgspec's validation message as (reason, detail naming the field)."""
    text, _, field = message.partition(_AT)
    field = field.rstrip("`")
    if missing := _MISSING.fullmatch(text):
        field = missing.group(1)
        reason = "missing_field"
    elif text == _UNKNOWN_CODE:
        field, reason = "code", "unknown_enum"
    elif text == _TOO_DEEP:
        field, reason = "detail", "too_deep"
    elif not field and text.startswith("Expected `object`"):
        reason = "not_an_object"
    elif field == "v":
        reason = "unsupported_version"
    elif field == "ts":
        reason = "bad_timestamp"
    elif field == "elevator_id" and "regex" in text:
        reason = "bad_id"
    elif text.startswith("Invalid enum value"):
        reason = "unknown_enum"
    elif _RANGE.match(text) or "regex" in text:
        reason = "out_of_range"
    else:
        reason = "wrong_type"
    return reason, f"{field}: {text}" if field else text

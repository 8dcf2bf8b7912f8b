"""The wire contract (contract.md §1) as models, and the one function that decodes a message.

`decode(topic, payload, received_at)` never raises: it returns a `Frame` or a `Rejected`
that says why, in one of the `REASONS` below. Extra body fields are kept on the model.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

MAX_PAYLOAD_BYTES: Final = 64 * 1024
INT64_MAX: Final = 2**63 - 1
# Device clocks further off than this are not plausible: the frame is rejected, not just
# flagged (skew beyond 5 minutes is only flagged, by the pipeline).
MAX_FUTURE: Final = timedelta(days=1)
MAX_PAST: Final = timedelta(days=30)

ELEVATOR_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

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
)

ElevatorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]


def _known_code(code: str) -> str:
    if code in FAULT_CODES or VENDOR_CODE_RE.fullmatch(code):
        return code
    raise PydanticCustomError(
        "unknown_code", "unknown fault code (not in the catalogue, no X_ prefix)"
    )


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _shallow(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    if detail is not None and _depth(detail) > MAX_DEPTH:
        raise PydanticCustomError("too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return detail


class _Body(BaseModel):
    # strict: a device that sends "1" for an int or "true" for a bool is broken and is told so.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)

    v: Literal[1]
    elevator_id: ElevatorId
    seq: Annotated[int, Field(ge=0, le=INT64_MAX)]
    boot: Int64
    ts: AwareDatetime


class StatusBody(_Body):
    floor: Annotated[int, Field(ge=-50, le=300)]
    moving: bool
    direction: Literal["up", "down", "none"]
    speed_mps: Annotated[float, Field(ge=0, le=30)]
    door: Literal["open", "opening", "closed", "closing", "fault"]
    door_zone: bool
    occupied: bool
    load_pct: Annotated[float, Field(ge=0, le=150)]
    mode: Literal["normal", "inspection", "maintenance", "fire", "independent", "out_of_service"]
    alarm_button: bool
    power: Literal["mains", "battery", "off"]
    safety_circuit: Literal["closed", "open"]


class EventBody(_Body):
    code: Annotated[str, AfterValidator(_known_code)]
    state: Literal["raised", "cleared"]
    detail: Annotated[dict[str, Any] | None, AfterValidator(_shallow)] = None


Kind = Literal["status", "event", "online"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A valid frame: the body as sent plus what the gateway knows about its arrival."""

    kind: Kind
    elevator_id: str
    received_at: datetime
    body: StatusBody | EventBody | None  # None for `online`
    online: bool | None = None  # only for `online`


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # one of REASONS
    detail: str
    topic: str
    payload: bytes
    received_at: datetime
    elevator_id: str | None  # from the topic, when it names one


_PYDANTIC_REASONS: Final = {
    "json_invalid": "bad_json",
    "json_type": "bad_json",
    "missing": "missing_field",
    "literal_error": "unknown_enum",
    "enum": "unknown_enum",
    "unknown_code": "unknown_enum",
    "too_deep": "too_deep",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "finite_number": "out_of_range",
    "string_pattern_mismatch": "out_of_range",
    "string_too_long": "out_of_range",
    "model_type": "not_an_object",
    "model_attributes_type": "not_an_object",
    "timezone_aware": "bad_timestamp",
    "datetime_parsing": "bad_timestamp",
    "datetime_from_date_parsing": "bad_timestamp",
    "datetime_type": "bad_timestamp",
}

_BODY_MODELS: Final = {"status": StatusBody, "event": EventBody}


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
    model = _BODY_MODELS.get(kind)
    if model is None:
        return reject("bad_topic", f"unknown topic kind {kind!r} (status, event or online)")

    if not payload.isascii():  # the usual frame is ASCII: checked without a copy
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return reject("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        body = model.model_validate_json(payload)
    except ValidationError as exc:
        return reject(*_explain(exc))
    if body.elevator_id != elevator_id:
        return reject("spoofed_id", f"body elevator_id {body.elevator_id!r} is not the topic's")
    offset = body.ts - received_at
    if offset > MAX_FUTURE or -offset > MAX_PAST:
        return reject(
            "timestamp_out_of_range", f"ts {body.ts.isoformat()} is implausibly far from now"
        )
    return Frame(kind, elevator_id, received_at, body)  # type: ignore[arg-type]


def _explain(exc: ValidationError) -> tuple[str, str]:
    """The first validation error as (reason, detail naming the field)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    etype = err["type"]
    if loc == "v" and etype == "literal_error":
        reason = "unsupported_version"
    elif loc == "elevator_id" and etype in ("string_pattern_mismatch", "string_too_long"):
        reason = "bad_id"
    elif etype == "json_invalid" and "recursion limit" in err["msg"]:
        reason = "too_deep"
    else:
        reason = _PYDANTIC_REASONS.get(etype, "wrong_type")
    return reason, f"{loc}: {err['msg']}" if loc else err["msg"]

"""Profile files: YAML -> frozen models, every error reported as `file:line: message`.

A profile says which topic it claims (`lift/{elevator_id}/data`), where each contract field
comes from in the payload (a dotted path), how values are mapped or scaled, how the time is
written and in which zone, where `seq` and `boot` are (or how they are derived), and which
vendor fault number is which catalogue code. `contract: true` marks the native profile: the
contract itself, nothing mapped. `load_profiles` reads the packaged directory and any extra
one and raises `ProfileError` listing every problem it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

import device_profiles
from gateway.frames import FAULT_CODES, REASONS, VENDOR_CODE_RE, StatusBody
from gateway.ingest import SUBSCRIPTIONS

# The rule files' YAML loader: it keeps the line of every key and item.
from gateway.rules.spec import _line as line_of
from gateway.rules.spec import _Loader

DEFAULT_PROFILES_DIR: Final = Path(device_profiles.__file__).resolve().parent
TIME_FORMATS: Final = ("rfc3339", "epoch_s", "epoch_ms")  # besides strptime formats
# The common fields, then the status's own: those a profile must give (required, in order).
COMMON_FIELDS: Final = ("v", "elevator_id", "seq", "boot", "ts")
_REQUIRED: Final = StatusBody.__struct_fields__[
    : len(StatusBody.__struct_fields__) - len(StatusBody.__struct_defaults__)
]
assert _REQUIRED[: len(COMMON_FIELDS)] == COMMON_FIELDS
STATUS_FIELDS: Final = _REQUIRED[len(COMMON_FIELDS) :]
_PATH_RE: Final = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_TOPIC_LEVEL_RE: Final = re.compile(r"[^+#{}/\s]+")
ID_PLACEHOLDER: Final = "{elevator_id}"


class ProfileError(Exception):
    """Profile files that cannot be used; `errors` holds one `file:line: message` each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def _path(value: Any) -> Any:
    if not isinstance(value, str) or not _PATH_RE.fullmatch(value):
        raise ValueError(f"not a dotted path into the payload: {value!r} (e.g. status.floor)")
    return value


Path_ = Annotated[str, BeforeValidator(_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Where a value comes from: a `path` (optionally through a `map` or times `scale`), or
    a constant `value`. A bare string is a path."""

    path: Path_ | None = None
    map: dict[int | str | bool, Any] | None = None
    scale: float | None = None
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        names = [n for n in ("path", "value", "derive") if n in type(self).model_fields]
        if sum(getattr(self, n) is not None for n in names) != 1:
            raise ValueError(f"give exactly one of: {', '.join(names)}")
        if self.value is not None and (self.map is not None or self.scale is not None):
            raise ValueError("a constant value takes no map or scale")
        if self.map is not None and self.scale is not None:
            raise ValueError("give a map or a scale, not both")
        if self.map is not None and not self.map:
            raise ValueError("an empty map takes nothing")
        return self


class Counter(Source):
    """`seq` or `boot`; `seq` may be `{derive: time}`: the device time in milliseconds."""

    derive: Literal["time"] | None = None


class TimeSpec(_Model):
    path: Path_
    # rfc3339 (with offset), epoch_s, epoch_ms, or a strptime format read in `zone`.
    format: str = "rfc3339"
    zone: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone!r} (an IANA name)") from None
        return zone

    @model_validator(mode="after")
    def _zone_for_local_times(self) -> TimeSpec:
        if self.format not in TIME_FORMATS:
            if "%" not in self.format:
                raise ValueError(f"format: one of {TIME_FORMATS} or a strptime format")
            if "%z" not in self.format and self.zone is None:
                raise ValueError("a local time format needs a zone (e.g. Asia/Shanghai)")
        return self


def _code(value: Any) -> Any:
    if not isinstance(value, str) or not (value in FAULT_CODES or VENDOR_CODE_RE.fullmatch(value)):
        raise ValueError(f"unknown fault code {value!r} (a catalogue code or X_...)")
    return value


class Faults(_Model):
    """A list of the vendor fault numbers active now; each change becomes an event."""

    path: Path_
    codes: dict[int | str, Annotated[str, BeforeValidator(_code)]]


class CaseMessage(_Model):
    """A payload, and the frames expected of it (the fields named) or its rejection."""

    topic: str | None = None  # default: the profile's topic, with the payload's id
    payload: Any
    received_at: AwareDatetime = datetime(2026, 11, 27, 1, 15, 5, tzinfo=UTC)  # the cases' day
    rejected: dict[str, str] | None = None  # {reason, path}: the path must be in the detail
    frames: tuple[dict[str, Any], ...] = ()

    @field_validator("rejected")
    @classmethod
    def _reason(cls, rejected: dict[str, str] | None) -> dict[str, str] | None:
        if rejected is not None:
            if set(rejected) - {"reason", "path"} or "reason" not in rejected:
                raise ValueError("rejected: {reason, path?}")
            if rejected["reason"] not in REASONS:
                raise ValueError(f"unknown reason {rejected['reason']!r}")
        return rejected


class Case(_Model):
    name: str
    messages: tuple[CaseMessage, ...] = Field(min_length=1)
    source: str = ""  # file:line, filled in by the loader


class Profile(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
    description: str
    contract: bool = False
    topic: str | None = None
    elevator_id: Source | None = None
    seq: Counter | None = None
    boot: Counter | None = None
    ts: TimeSpec | None = None
    status: dict[str, Source] | None = None
    faults: Faults | None = None
    tests: tuple[Case, ...] = ()
    file: str = ""  # where it was read, filled in by the loader

    @field_validator("topic")
    @classmethod
    def _topic(cls, topic: str | None) -> str | None:
        if topic is not None:
            levels = topic.split("/")
            if levels.count(ID_PLACEHOLDER) != 1 or not all(
                level == ID_PLACEHOLDER or _TOPIC_LEVEL_RE.fullmatch(level) for level in levels
            ):
                raise ValueError(
                    "a topic of plain levels with {elevator_id} as one whole level, no wildcards"
                    " (e.g. lift/{elevator_id}/data)"
                )
        return topic

    @field_validator("status")
    @classmethod
    def _status(cls, status: dict[str, Source] | None) -> dict[str, Source] | None:
        if status is None:
            return None
        unknown = set(status) - set(STATUS_FIELDS)
        if unknown:
            raise ValueError(f"not contract status fields: {sorted(unknown)}")
        missing = [f for f in STATUS_FIELDS if f not in status]
        if missing:
            raise ValueError(f"every contract status field needs a source; missing: {missing}")
        for name, source in status.items():
            values = source.map.values() if source.map is not None else ()
            if source.value is not None:
                values = (source.value,)
            for value in values:
                problem = _status_value_problem(name, value)
                if problem:
                    raise ValueError(f"{name}: {value!r} is not a valid value: {problem}")
        return status

    @model_validator(mode="after")
    def _complete(self) -> Profile:
        mapped = {
            "topic": self.topic, "elevator_id": self.elevator_id, "seq": self.seq,
            "boot": self.boot, "ts": self.ts, "status": self.status,
        }  # fmt: skip
        if self.contract:
            given = [k for k, v in {**mapped, "faults": self.faults}.items() if v is not None]
            if given:
                raise ValueError(f"the contract profile maps nothing; remove {given}")
            return self
        missing = [k for k, v in mapped.items() if v is None]
        if missing:
            raise ValueError(f"missing {missing}")
        assert self.elevator_id is not None and self.seq is not None
        if self.elevator_id.path is None or self.elevator_id.map or self.elevator_id.scale:
            raise ValueError("elevator_id: a plain path (it must equal the topic's id)")
        if self.seq.value is not None:
            raise ValueError("seq: a path, or {derive: time}")
        return self


_CHECK_BODY: Final = {
    "v": 1, "elevator_id": "E1", "seq": 0, "boot": 0, "ts": "2026-01-01T00:00:00Z",
    "floor": 1, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
    "door_zone": True, "occupied": False, "load_pct": 0.0, "mode": "normal",
    "alarm_button": False, "power": "mains", "safety_circuit": "closed",
}  # fmt: skip


def _status_value_problem(field: str, value: Any) -> str | None:
    try:
        msgspec.convert({**_CHECK_BODY, field: value}, StatusBody)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def load_profiles(*directories: Path) -> tuple[Profile, ...]:
    """Every `*.yaml` of the packaged directory and of `directories`; `ProfileError` on any
    problem (names and topics must be unique across them all)."""
    errors: list[str] = []
    profiles: list[Profile] = []
    for directory in (DEFAULT_PROFILES_DIR, *directories):
        files = sorted(Path(directory).glob("*.yaml"))
        if not files:
            errors.append(f"{directory}: no *.yaml profile files")
        for path in files:
            profile = _parse(path, errors)
            if profile is not None:
                profiles.append(profile)
    errors += _cross_check(profiles)
    if errors:
        raise ProfileError(errors)
    return tuple(profiles)


def subscription(profile: Profile) -> tuple[str, ...]:
    """The MQTT topic filters that bring this profile's messages."""
    if profile.contract:
        return SUBSCRIPTIONS
    assert profile.topic is not None
    return (profile.topic.replace(ID_PLACEHOLDER, "+"),)


def _cross_check(profiles: list[Profile]) -> list[str]:
    errors = []
    names: dict[str, str] = {}
    claims: dict[str, str] = {}
    for p in profiles:
        if p.name in names:
            errors.append(f"{p.file}: profile name {p.name!r} is taken by {names[p.name]}")
        names.setdefault(p.name, p.file)
        for topic in subscription(p):
            if topic in claims:
                errors.append(f"{p.file}: topic {topic!r} is claimed by {claims[topic]} too")
            claims.setdefault(topic, p.file)
    if not any(p.contract for p in profiles):
        errors.append("no contract profile (the packaged native.yaml is missing)")
    return errors


def _parse(path: Path, errors: list[str]) -> Profile | None:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        errors.append(f"{path}:{mark.line + 1 if mark else 1}: YAML: {exc.problem or exc}")
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        errors.append(f"{path}:1: {exc}")
        return None
    if not isinstance(data, dict):
        errors.append(f"{path}:1: a profile is a mapping (name, description, topic, ...)")
        return None
    try:
        profile = Profile.model_validate({**data, "file": f"{path}:{getattr(data, 'line', 1)}"})
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(p for p in err["loc"] if not isinstance(p, str) or "[" not in p)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            errors.append(f"{path}:{line_of(data, loc)}: {'.'.join(map(str, loc))}: {msg}")
        return None
    cases = tuple(
        c.model_copy(update={"source": f"{path}:{line_of(data, ('tests', i))}"})
        for i, c in enumerate(profile.tests)
    )
    return profile.model_copy(update={"tests": cases})

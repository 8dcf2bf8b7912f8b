"""Rule files: YAML -> frozen models, every error reported as `file:line: message`.

A file holds any of `rules`, `mutes` (exclusions), `settings` (in at most one file) and
`tests` (cases run by `rules test`). `load_rules` reads every `*.yaml` of a directory,
checks references across files and returns one `RuleSet`, or raises `RuleError` listing
every problem it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

import alert_rules
from gateway.frames import FAULT_CODES, VENDOR_CODE_RE, ElevatorId, StatusBody
from gateway.rules.expr import Expr, ExprError, compile_expr

DEFAULT_RULES_DIR: Final = Path(alert_rules.__file__).resolve().parent

Severity = Literal["critical", "major", "minor"]
IncidentClass = Literal["entrapment", "accident", "fault", "event"]
# Incident kinds besides the catalogue's codes.
KINDS: Final = frozenset({"entrapment", "offline", "power_cut"})

_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class RuleError(Exception):
    """Rule files that cannot be used; `errors` holds one `file:line: message` per problem."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def _seconds(value: Any) -> Any:
    """`45`, `45s`, `1.5m`, `500ms`, `1h` -> seconds."""
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value.strip())
        if m is None:
            raise ValueError(f"not a duration: {value!r} (e.g. 45s, 2m, 500ms)")
        return float(m[1]) * _UNIT_S[m[2]]
    return value


def _expr(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("a condition is a string")
    try:
        return compile_expr(value)
    except ExprError as exc:
        raise ValueError(str(exc)) from None


def _clears(value: Any) -> Any:
    return value if value is None or value == "cleared" else _expr(value)


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
Condition = Annotated[Expr, BeforeValidator(_expr)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Opens(_Model):
    kind: str
    severity: Severity
    incident_class: IncidentClass = Field(alias="class")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind in KINDS or kind in FAULT_CODES or VENDOR_CODE_RE.fullmatch(kind):
            return kind
        raise ValueError(
            f"unknown incident kind {kind!r} (a fault code, X_..., or {sorted(KINDS)})"
        )


class Escalate(_Model):
    """Raise the severity at firing time if any of these rules' conditions hold."""

    severity: Severity
    if_active: tuple[str, ...] = Field(min_length=1)


class Rule(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    description: str
    stream: Literal["status", "event", "online"]
    condition: Condition
    hold: Duration = 0.0
    # Hysteresis: the clear signal must last this long, or the episode goes on.
    clear_hold: Duration = 30.0
    opens: Opens
    # None: status/online rules clear when the condition stops holding, event rules on the
    # `cleared` event of their code. An expression is checked on every frame of the car.
    clears: Annotated[Literal["cleared"] | Expr | None, BeforeValidator(_clears)] = None
    escalate: Escalate | None = None

    @model_validator(mode="after")
    def _clears_fits_stream(self) -> Rule:
        if self.stream == "event":
            if self.clears in (None, "cleared") and self.condition.code is None:
                raise ValueError(
                    "an event rule that clears on its `cleared` event needs "
                    "`code == '...'` in its condition"
                )
        elif self.clears == "cleared":
            raise ValueError("`clears: cleared` is only for event rules")
        return self

    @property
    def clears_on_event(self) -> bool:
        return self.stream == "event" and self.clears in (None, "cleared")


class Mute(_Model):
    """An exclusion: while its condition holds, rules of these classes do not hold."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    description: str
    condition: Condition
    classes: tuple[IncidentClass, ...] = Field(min_length=1)


class Settings(_Model):
    silence: Duration = 30.0  # 3 status intervals: connected but silent is not alive
    power_cut_min_elevators: Annotated[int, Field(ge=2)] = 2
    power_cut_severity: Severity = "critical"


# A healthy idle car; a test case's status frames change only what they name.
CASE_STATUS_DEFAULTS: Final[dict[str, Any]] = {
    "floor": 1,
    "moving": False,
    "direction": "none",
    "speed_mps": 0.0,
    "door": "closed",
    "door_zone": True,
    "occupied": False,
    "load_pct": 0.0,
    "mode": "normal",
    "alarm_button": False,
    "power": "mains",
    "safety_circuit": "closed",
}


class CaseFrame(_Model):
    """One frame of a test case: exactly one of status, event, online or silent."""

    at: Annotated[float, Field(ge=0)]
    elevator: ElevatorId = "E1"
    status: dict[str, Any] | None = None
    event: str | None = None
    state: Literal["raised", "cleared"] = "raised"
    online: bool | None = None
    silent: bool = False  # from here on the elevator sends nothing (no heartbeats)

    @field_validator("status")
    @classmethod
    def _status_fields(cls, status: dict[str, Any] | None) -> dict[str, Any] | None:
        if status is not None:
            unknown = set(status) - set(CASE_STATUS_DEFAULTS)
            if unknown:
                raise ValueError(f"unknown status fields: {sorted(unknown)}")
            body = {"v": 1, "elevator_id": "E1", "seq": 0, "boot": 0, "ts": "2026-01-01T00:00:00Z"}
            try:
                msgspec.convert({**CASE_STATUS_DEFAULTS, **status, **body}, StatusBody)
            except msgspec.ValidationError as exc:
                raise ValueError(str(exc)) from None
        return status

    @field_validator("event")
    @classmethod
    def _code(cls, code: str | None) -> str | None:
        if code is not None and not (code in FAULT_CODES or VENDOR_CODE_RE.fullmatch(code)):
            raise ValueError(f"unknown fault code {code!r}")
        return code

    @model_validator(mode="after")
    def _one_thing(self) -> CaseFrame:
        given = [self.status is not None, self.event is not None, self.online is not None]
        if sum(given) + self.silent != 1:
            raise ValueError("a frame is exactly one of: status, event, online, silent")
        return self


class Expected(_Model):
    at: float
    fire: str | None = None
    clear: str | None = None
    elevator: str = "E1"  # for a site-level alert: the site
    kind: str | None = None
    severity: Severity | None = None
    group: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Expected:
        if (self.fire is None) == (self.clear is None):
            raise ValueError("an expected alert has exactly one of: fire, clear")
        return self

    @property
    def rule(self) -> str:
        return self.fire or self.clear or ""


class Case(_Model):
    name: str
    sites: dict[str, str] = {}
    heartbeat: Duration = 10.0  # each elevator repeats its last status this often; 0: never
    until: float | None = None  # default: 60 s after the last frame
    frames: tuple[CaseFrame, ...] = Field(min_length=1)
    expect: tuple[Expected, ...] = ()
    source: str = ""  # file:line, filled in by the loader


class RuleFile(_Model):
    rules: tuple[Rule, ...] = ()
    mutes: tuple[Mute, ...] = ()
    settings: Settings | None = None
    tests: tuple[Case, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    mutes: tuple[Mute, ...] = ()
    settings: Settings = field(default_factory=Settings)
    cases: tuple[Case, ...] = ()


def load_rules(directory: Path = DEFAULT_RULES_DIR) -> RuleSet:
    """Every `*.yaml` in `directory` as one rule set; raises `RuleError` on any problem."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise RuleError([f"{directory}: no *.yaml rule files"])
    errors: list[str] = []
    rules: list[Rule] = []
    mutes: list[Mute] = []
    cases: list[Case] = []
    settings: list[Settings] = []
    where: dict[int, str] = {}  # id(model) -> file:line, for errors across files
    for path in files:
        parsed = _parse(path, errors)
        if parsed is None:
            continue
        data, model = parsed
        for key, items in (("rules", model.rules), ("mutes", model.mutes)):
            for i, item in enumerate(items):
                where[id(item)] = f"{path}:{_line(data, (key, i))}"
        rules += model.rules
        mutes += model.mutes
        cases += [
            c.model_copy(update={"source": f"{path}:{_line(data, ('tests', i))}"})
            for i, c in enumerate(model.tests)
        ]
        if model.settings is not None:
            settings.append(model.settings)
            where[id(model.settings)] = f"{path}:{_line(data, ('settings',))}"
    errors += _cross_check(rules, mutes, cases, settings, where)
    if errors:
        raise RuleError(errors)
    return RuleSet(
        tuple(rules), tuple(mutes), settings[0] if settings else Settings(), tuple(cases)
    )


def _cross_check(
    rules: list[Rule],
    mutes: list[Mute],
    cases: list[Case],
    settings: list[Settings],
    where: dict[int, str],
) -> list[str]:
    errors = []
    seen: set[str] = set()
    for item in [*rules, *mutes]:
        if item.id in seen:
            errors.append(f"{where[id(item)]}: duplicate id {item.id!r}")
        seen.add(item.id)
    rule_ids = {r.id for r in rules}
    for r in rules:
        if r.escalate is not None:
            for other in set(r.escalate.if_active) - rule_ids:
                errors.append(f"{where[id(r)]}: escalate.if_active names unknown rule {other!r}")
    known = rule_ids | {"site_power_cut"}
    for case in cases:
        for e in case.expect:
            if e.rule not in known:
                errors.append(f"{case.source}: case {case.name!r} expects unknown rule {e.rule!r}")
    errors += [f"{where[id(s)]}: settings are given in more than one file" for s in settings[1:]]
    return errors


def _parse(path: Path, errors: list[str]) -> tuple[Any, RuleFile] | None:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        errors.append(f"{path}:{line}: YAML: {exc.problem or exc}")
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        errors.append(f"{path}:1: {exc}")
        return None
    if data is None:
        data = _Map()
    try:
        return data, RuleFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(p for p in err["loc"] if not isinstance(p, str) or "[" not in p)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            name = ".".join(str(p) for p in loc)
            errors.append(f"{path}:{_line(data, loc)}: {name}: {msg}")
        return None


# -- YAML with line numbers --------------------------------------------------------------
class _Map(dict[Any, Any]):
    """A mapping that remembers the line of each key."""

    line = 1
    lines: dict[Any, int]


class _Seq(list[Any]):
    """A sequence that remembers the line of each item."""

    line = 1
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line, result.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    result.line, result.lines = (
        node.start_mark.line + 1,
        [n.start_mark.line + 1 for n in node.value],
    )
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _line(data: Any, loc: tuple[Any, ...]) -> int:
    """The line of the deepest part of `loc` that exists in `data`."""
    line = getattr(data, "line", 1)
    for part in loc:
        in_map = isinstance(data, _Map) and part in data
        if in_map or (isinstance(data, _Seq) and isinstance(part, int) and 0 <= part < len(data)):
            line, data = data.lines[part], data[part]
        else:
            break
    return line

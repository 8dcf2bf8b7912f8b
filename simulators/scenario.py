"""The scenario file: a fleet, its faults, crews and misbehaviours, and a seed (YAML).

Every section and key is optional; what is left out takes the defaults below. The same
file, seed and start time give the same frames and the same labels. Example:

    seed: 7
    start: 2026-11-27T08:00:00+08:00   # simulated start; leave out to start now
    utc_offset: "+08:00"               # the controllers' clocks (and traffic's hour of day)
    status_interval_s: 10
    elevators:
      - {prefix: RES, count: 35, building: residential, floors: [-1, 24]}
      - {prefix: "OFF", count: 10, building: office, floors: [-2, 30], speed_mps: 2.5}
      - {prefix: HOS, count: 5, building: hospital, floors: [0, 12], rated_kg: 1600}
    faults: {entrapments_per_year: 0.1, faults_per_year: 1.0, reboots_per_year: 2}
    crew:
      delay: {distribution: lognormal, median_s: 720, sigma: 0.4, late_share: 0.08}
    misbehave: {devices: 0.1, duplicates: 0.05, clock_skew_s: 420}
    sensors: {pir_dropouts_per_min: 1, pir_dropout_s: [2, 8]}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import yaml

from simulators.car import SensorConfig
from simulators.crew import CrewConfig
from simulators.faults import FaultConfig
from simulators.misbehave import MisbehaveConfig
from simulators.traffic import Building


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the key."""


@dataclass(frozen=True)
class Group:
    """A number of alike elevators: ids `{prefix}{n:04d}`, numbered from 1."""

    prefix: str = "EL"
    count: int = 1
    building: Building = "residential"
    floors: tuple[int, int] = (-1, 18)
    speed_mps: float = 1.75
    rated_kg: float = 1000.0
    traffic: float = 1.0  # multiplies the building type's trip rates
    company: str | None = None  # maintenance company; default: one of crew.companies

    def __post_init__(self) -> None:
        if not self.prefix or not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise ValueError("prefix must be letters, digits, _ or -")
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if self.floors[0] >= self.floors[1]:
            raise ValueError("floors must be [lowest, highest] with lowest < highest")
        if self.speed_mps <= 0 or self.rated_kg < 75:
            raise ValueError("speed_mps must be > 0 and rated_kg >= 75")

    def ids(self) -> list[str]:
        return [f"{self.prefix}{n:04d}" for n in range(1, self.count + 1)]


def _default_groups() -> tuple[Group, ...]:
    # About 70 % of elevators are residential (domain.md).
    return (
        Group("RES", 7, "residential", (-1, 24)),
        Group("OFF", 2, "office", (-2, 30), speed_mps=2.5, rated_kg=1350),
        Group("HOS", 1, "hospital", (0, 12), speed_mps=1.6, rated_kg=1600),
    )


@dataclass(frozen=True)
class Scenario:
    seed: int = 1
    start: datetime | None = None
    utc_offset: str = "+08:00"
    tick_s: float = 0.5
    status_interval_s: float = 10.0
    duration_s: float | None = None
    elevators: tuple[Group, ...] = field(default_factory=_default_groups)
    faults: FaultConfig = field(default_factory=FaultConfig)
    crew: CrewConfig = field(default_factory=CrewConfig)
    misbehave: MisbehaveConfig = field(default_factory=MisbehaveConfig)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    # The alarm devices' automatic test call (ALARM_TEST, EN 81-28): daily from a first call
    # within ten minutes, except for this share of cars whose alarm device never calls.
    # 0 or less: no test calls (the default, so other scenarios send what they always sent).
    alarm_tests_broken: float = -1.0

    def __post_init__(self) -> None:
        self.tz  # noqa: B018 - validates utc_offset
        if not 0 < self.tick_s <= self.status_interval_s:
            raise ValueError("tick_s must be > 0 and <= status_interval_s")
        prefixes = [g.prefix for g in self.elevators]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("elevators: each group needs its own prefix")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start needs a UTC offset")

    @property
    def tz(self) -> timezone:
        try:
            sign = -1 if self.utc_offset.startswith("-") else 1
            hours, minutes = self.utc_offset.lstrip("+-").split(":")
            return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
        except ValueError:
            raise ValueError(f"utc_offset must look like +08:00, not {self.utc_offset!r}") from None

    @property
    def size(self) -> int:
        return sum(g.count for g in self.elevators)

    def resized(self, elevators: int) -> Scenario:
        """The same mix of groups scaled to `elevators` cars in all."""
        total = self.size or 1
        counts = [g.count * elevators // total for g in self.elevators]
        counts[0] += elevators - sum(counts)  # rounding remainder goes to the first group
        groups = tuple(
            dataclasses.replace(g, count=c) for g, c in zip(self.elevators, counts, strict=True)
        )
        return dataclasses.replace(self, elevators=groups)


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data)


def parse_scenario(data: Any) -> Scenario:
    return _build(Scenario, data, "")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ScenarioError(f"{where or 'scenario'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ScenarioError(f"{path}: unknown key (known: {', '.join(sorted(names))})")
        values[key] = _convert(hints[key], value, path)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ScenarioError(f"{where or 'scenario'}: {exc}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(hint, value, path)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise ScenarioError(f"{path}: must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ScenarioError(f"{path}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ScenarioError(f"{path}: expected {len(args)} values")
        return tuple(
            _convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ScenarioError(f"{path}: expected a mapping")
        return {str(k): _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if hint is datetime:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise ScenarioError(f"{path}: not an RFC 3339 time") from None
        if isinstance(value, datetime):
            return value
        raise ScenarioError(f"{path}: expected a time")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ScenarioError(f"{path}: expected {hint.__name__}, got {value!r}")

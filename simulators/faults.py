"""Fault injection: every code of the catalogue (domain.md), entrapments among them.

Each car draws its next entrapment, next other fault and next controller reboot from
Poisson processes with configurable rates per elevator-year. A drawn fault waits until the
car is in a state where it can happen (an entrapment needs people in a moving car, a door
that fails to close needs an open door) and then takes the car over. Faults that stop the
car stay until a crew repairs them (`crew.py`); the others clear by themselves. Each fault
becomes one label (elevator, kind, start, end) so detection can be scored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from simulators.car import FLOOR_HEIGHT_M, INSPECTION_MPS, Car
from simulators.device import Device
from simulators.labels import Label, make_label

SECONDS_PER_YEAR: Final = 365.25 * 86400
ENTRAPMENT_CAUSES: Final = ("between_floors", "at_landing", "power_cut")


def _default_causes() -> dict[str, float]:
    # domain.md: power cuts and external causes 20–33 %, door system about 15 %, and most
    # of the rest (misuse, drive faults) leaves the car stuck between floors.
    return {"between_floors": 0.6, "at_landing": 0.15, "power_cut": 0.25}


def _default_codes() -> dict[str, float]:
    # Relative frequencies of the non-entrapment faults; accidents are the rare ones.
    return {
        "ALARM_BUTTON": 8,
        "STOP_OUTSIDE_DOOR_ZONE": 4,
        "DOOR_OPEN_WHILE_MOVING": 1,
        "UNINTENDED_MOVEMENT": 1,
        "OVERSPEED": 1,
        "OVERTRAVEL_TOP": 1,
        "OVERTRAVEL_BOTTOM": 1,
        "SAFETY_CIRCUIT_OPEN": 3,
        "DOOR_LOCK_FAULT": 4,
        "DOOR_FAIL_TO_OPEN": 5,
        "DOOR_FAIL_TO_CLOSE": 5,
        "DOOR_REPEATED_CYCLING": 4,
        "POWER_FAILURE": 4,
        "CONTROLLER_FAULT": 3,
    }


@dataclass(frozen=True)
class FaultConfig:
    entrapments_per_year: float = 0.1
    faults_per_year: float = 1.0  # all other codes together
    reboots_per_year: float = 2.0
    causes: dict[str, float] = field(default_factory=_default_causes)
    codes: dict[str, float] = field(default_factory=_default_codes)
    controller_detects: float = 0.5  # share of entrapments the controller raises ENTRAPMENT for
    alarm_pressers: float = 0.8  # share of trapped passengers who use the alarm button

    def __post_init__(self) -> None:
        for name in ("entrapments_per_year", "faults_per_year", "reboots_per_year"):
            if getattr(self, name) < 0:
                raise ValueError(f"faults.{name} must be >= 0")
        if unknown := set(self.causes) - set(ENTRAPMENT_CAUSES):
            raise ValueError(f"faults.causes: unknown cause {sorted(unknown)[0]!r}")
        if unknown := set(self.codes) - set(_EFFECTS):
            raise ValueError(f"faults.codes: not an injectable code: {sorted(unknown)[0]!r}")


# -- what each fault does to the car -------------------------------------------------------


def _empty(car: Car) -> bool:
    return car.people == 0 and car.in_service


def _occupied_moving(car: Car) -> bool:
    return car.people > 0 and car.in_service and car.moving


def _parked(car: Car) -> bool:
    return car.target is None and not car.moving and car.door_zone


def _stop(car: Car) -> None:
    car.emergency_stop()
    car.blocked = True


def _trip(car: Car) -> None:
    """The safety gear or safety chain takes the car out of service."""
    _stop(car)
    car.safety_circuit = "open"
    car.mode = "out_of_service"


def _door_fault(car: Car) -> None:
    car.door, car.door_stuck, car.blocked = "fault", True, True


def _door_stays_open(car: Car) -> None:
    car.door_stuck, car.blocked = True, True


def _door_opens_moving(car: Car) -> None:
    car.door = "open"
    _door_stays_open(car)


def _power_cut(car: Car) -> None:
    car.power = "battery"  # the controller keeps reporting from its backup battery
    _stop(car)


def _overtravel(top: bool) -> Callable[[Car], None]:
    # A car near its terminal floor loses its position (a slipping encoder) and runs on
    # until the final limit switch opens the safety chain.
    def start(car: Car) -> None:
        terminal = car.highest if top else car.lowest
        car.pos_m = terminal * FLOOR_HEIGHT_M + (0.4 if top else -0.4)
        _trip(car)

    return start


def _drift_away(car: Car) -> None:
    """Unintended movement: the brake slips and the car creeps away with its door open."""
    _door_stays_open(car)
    car.drive_to(car.floor + (1 if car.floor < car.highest else -1), INSPECTION_MPS)


def _controller_down(car: Car) -> None:
    _stop(car)
    car.mode = "out_of_service"


def _press_alarm(car: Car) -> None:
    car.alarm_button = True


@dataclass(frozen=True)
class _Effect:
    ready: Callable[[Car], bool]
    start: Callable[[Car], None]
    crew: bool  # stays until a crew repairs it; otherwise clears after `clears_s`
    clears_s: tuple[float, float] = (0.0, 0.0)
    trip_after_s: float | None = None  # the safety chain catches it this much later


_EFFECTS: Final[dict[str, _Effect]] = {
    # Misuse: someone leans on the button for a few seconds during a ride.
    "ALARM_BUTTON": _Effect(_occupied_moving, _press_alarm, False, (3, 20)),
    "STOP_OUTSIDE_DOOR_ZONE": _Effect(
        lambda c: _empty(c) and c.moving and not c.door_zone, _stop, True
    ),
    "DOOR_OPEN_WHILE_MOVING": _Effect(
        lambda c: _empty(c) and c.moving,
        _door_opens_moving,
        True,
        trip_after_s=1.0,
    ),
    "UNINTENDED_MOVEMENT": _Effect(
        lambda c: _empty(c) and _parked(c) and c.door == "open",
        _drift_away,
        True,
        trip_after_s=1.5,
    ),
    "OVERSPEED": _Effect(
        lambda c: _empty(c) and abs(c.velocity) >= 0.8 * c.rated_speed_mps, _trip, True
    ),
    "OVERTRAVEL_TOP": _Effect(
        lambda c: _empty(c) and c.velocity > 0 and c.floor >= c.highest - 2,
        _overtravel(True),
        True,
    ),
    "OVERTRAVEL_BOTTOM": _Effect(
        lambda c: _empty(c) and c.velocity < 0 and c.floor <= c.lowest + 2,
        _overtravel(False),
        True,
    ),
    "SAFETY_CIRCUIT_OPEN": _Effect(_empty, _trip, True),
    "DOOR_LOCK_FAULT": _Effect(
        lambda c: _empty(c) and _parked(c) and c.door == "closed", _door_fault, True
    ),
    "DOOR_FAIL_TO_OPEN": _Effect(
        lambda c: _empty(c) and _parked(c) and c.door == "closed", _door_fault, False, (60, 600)
    ),
    "DOOR_FAIL_TO_CLOSE": _Effect(
        lambda c: _empty(c) and _parked(c) and c.door == "open", _door_stays_open, False, (120, 900)
    ),
    "DOOR_REPEATED_CYCLING": _Effect(
        lambda c: _empty(c) and _parked(c), lambda c: setattr(c, "blocked", True), False, (60, 300)
    ),
    "POWER_FAILURE": _Effect(_empty, _power_cut, False, (60, 2700)),
    "CONTROLLER_FAULT": _Effect(_empty, _controller_down, True),
}

_ENTRAPMENTS: Final[dict[str, tuple[str, _Effect]]] = {
    # cause: (the code the controller raises, effect)
    "between_floors": (
        "STOP_OUTSIDE_DOOR_ZONE",
        _Effect(lambda c: _occupied_moving(c) and not c.door_zone, _stop, True),
    ),
    "at_landing": (
        "DOOR_FAIL_TO_OPEN",
        # Caught while levelling into its landing: the car stops there with the door failed.
        _Effect(
            lambda c: _occupied_moving(c) and c.door_zone and c.target == c.floor, _door_fault, True
        ),
    ),
    "power_cut": ("POWER_FAILURE", _Effect(_occupied_moving, _power_cut, True)),
}


class Fault:
    """One injected fault on one car, from its start to its repair."""

    def __init__(
        self,
        device: Device,
        kind: str,
        cause: str | None,
        code: str,
        effect: _Effect,
        rng: random.Random,
        cfg: FaultConfig,
        now: float,
    ) -> None:
        self.device = device
        self.kind = kind  # "entrapment" or the fault code
        self.cause = cause
        self.needs_crew = effect.crew
        self.start_s = now
        self.end_s: float | None = None
        self.done = False
        self.freed = False
        self._rng = rng
        self._codes = [code]
        self._trip_at = None if effect.trip_after_s is None else now + effect.trip_after_s
        self._clear_at = None if effect.crew else now + rng.uniform(*effect.clears_s)
        self._freeing = False
        self._crew_here = False
        self._cycle_at = now if code == "DOOR_REPEATED_CYCLING" else None
        car = device.car
        detail: dict[str, Any] = {"floor": car.floor}
        if code == "OVERSPEED":
            detail["speed_mps"] = round(abs(car.velocity) * 1.25, 2)
        effect.start(car)
        car.abandon_calls()
        device.raise_event(code, detail)
        # Trapped passengers: the controller may notice on its own, people may press the alarm.
        self._detect_at: float | None = None
        self._alarm_at: float | None = None
        if kind == "entrapment":
            if rng.random() < cfg.controller_detects:
                self._detect_at = now + rng.uniform(10, 60)
            if rng.random() < cfg.alarm_pressers:
                self._alarm_at = now + rng.uniform(20, 90)

    def step(self, now: float) -> None:
        car = self.device.car
        if self._trip_at is not None and now >= self._trip_at:
            self._trip_at = None
            _trip(car)
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self._codes.append("ENTRAPMENT")
            self.device.raise_event("ENTRAPMENT", {"floor": car.floor})
        if self._alarm_at is not None and now >= self._alarm_at and not self._crew_here:
            self._toggle_alarm(now)
        if self._cycle_at is not None and now >= self._cycle_at:
            # The door reverses every time it nearly closes.
            car.close_door() if car.door in ("open", "opening") else car.open_door()
            self._cycle_at = now + 2.5
        if self._freeing and car.target is None:
            car.door_stuck = False
            car.open_door()
            if car.door == "open":
                car.evacuate()
                self._freeing, self.freed, self.end_s = False, True, now
        if self._clear_at is not None and now >= self._clear_at:
            self.resolve(now)

    def _toggle_alarm(self, now: float) -> None:
        car = self.device.car
        car.alarm_button = not car.alarm_button
        if car.alarm_button:
            self.device.raise_event("ALARM_BUTTON")
            self._alarm_at = now + self._rng.uniform(5, 45)  # held
        else:
            self.device.clear_event("ALARM_BUTTON")
            self._alarm_at = now + self._rng.uniform(60, 240)  # tries again later

    def crew_arrived(self) -> None:
        self._crew_here = True
        self._detect_at = self._alarm_at = None
        if self.device.car.alarm_button:
            self.device.car.alarm_button = False
            self.device.clear_event("ALARM_BUTTON")

    def free_passengers(self) -> None:
        """The crew winds the car to the nearest landing and opens the door by hand."""
        car = self.device.car
        car.drive_to(car.floor, INSPECTION_MPS)
        self._freeing = True

    def resolve(self, now: float) -> None:
        car = self.device.car
        for code in dict.fromkeys(self._codes):
            self.device.clear_event(code)
        if car.alarm_button:
            car.alarm_button = False
            self.device.clear_event("ALARM_BUTTON")
        car.blocked = car.door_stuck = False
        car.safety_circuit, car.power, car.mode = "closed", "mains", "normal"
        if car.door == "fault":
            car.door = "closed"
        elif car.door in ("open", "opening"):
            car.close_door()
        if not car.door_zone or car.target is not None:
            car.drive_to(car.floor, INSPECTION_MPS)  # re-level before taking calls again
        self.done = True
        self._clear_at = None
        if self.end_s is None:
            self.end_s = now
        if self.kind == "CONTROLLER_FAULT":
            self.device.reboot()  # the technician's fix: a restart

    def label(self) -> Label:
        codes = tuple(dict.fromkeys(self._codes))
        return make_label(self.device, self.kind, self.cause, self.start_s, self.end_s, codes)


class FaultInjector:
    """Draws and starts the faults of one car; at most one at a time."""

    def __init__(
        self,
        device: Device,
        rng: random.Random,
        cfg: FaultConfig,
        on_start: Callable[[Fault], None],
        on_end: Callable[[Fault], None],
    ) -> None:
        self.device = device
        self.cfg = cfg
        self._rng = rng
        self._on_start = on_start
        self._on_end = on_end
        self.active: Fault | None = None
        self._next_entrapment = self._draw(cfg.entrapments_per_year, 0.0)
        self._next_fault = self._draw(cfg.faults_per_year, 0.0)
        self._next_reboot = self._draw(cfg.reboots_per_year, 0.0)
        self._cause = self._pick(cfg.causes)
        self._code = self._pick(cfg.codes)

    def _draw(self, per_year: float, now: float) -> float:
        if per_year <= 0:
            return float("inf")
        return now + self._rng.expovariate(per_year / SECONDS_PER_YEAR)

    def _pick(self, weights: dict[str, float]) -> str:
        names = sorted(weights)
        return self._rng.choices(names, weights=[weights[n] for n in names])[0]

    def step(self, now: float) -> None:
        if self.active is not None:
            self.active.step(now)
            if self.active.done:
                self._on_end(self.active)
                self.active = None
            return
        if now >= self._next_reboot:
            self._next_reboot = self._draw(self.cfg.reboots_per_year, now)
            self.device.reboot()
        if now >= self._next_entrapment:
            code, effect = _ENTRAPMENTS[self._cause]
            if effect.ready(self.device.car):
                self._inject("entrapment", self._cause, code, effect, now)
                self._next_entrapment = self._draw(self.cfg.entrapments_per_year, now)
                self._cause = self._pick(self.cfg.causes)
        elif now >= self._next_fault:
            effect = _EFFECTS[self._code]
            if effect.ready(self.device.car):
                self._inject(self._code, None, self._code, effect, now)
                self._next_fault = self._draw(self.cfg.faults_per_year, now)
                self._code = self._pick(self.cfg.codes)

    def force(self, kind: str, now: float) -> Fault | None:
        """Inject `kind` (a code, or an entrapment cause) now if the car allows it."""
        if self.active is not None:
            return None
        if kind in _ENTRAPMENTS:
            code, effect = _ENTRAPMENTS[kind]
            cause: str | None = kind
            label = "entrapment"
        else:
            code, effect, cause, label = kind, _EFFECTS[kind], None, kind
        if not effect.ready(self.device.car):
            return None
        return self._inject(label, cause, code, effect, now)

    def _inject(
        self, kind: str, cause: str | None, code: str, effect: _Effect, now: float
    ) -> Fault:
        self.active = Fault(self.device, kind, cause, code, effect, self._rng, self.cfg, now)
        self._on_start(self.active)
        return self.active

"""One elevator car: shaft position, motion, doors and the people inside.

The car is a state machine advanced by `step(dt)`. In `normal` mode with nothing wrong it
serves its own queue of trips (collect, ride, drop); faults and crews take it over through
the few commands below (`emergency_stop`, `drive_to`, `open_door`, `evacuate`). It knows
nothing about MQTT or frames: `status()` is what its sensors would read.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

FLOOR_HEIGHT_M: Final = 3.0
ZONE_M: Final = 0.15  # half-height of the unlocking (door) zone around a landing
ACCEL_MPS2: Final = 0.8
LEVELLING_MPS: Final = 0.08  # creep speed of the final approach to the sill
LEVELLING_M: Final = 0.12  # distance covered at creep speed
ARRIVED_M: Final = 0.003
INSPECTION_MPS: Final = 0.3  # a technician drives the car at this speed
DOOR_MOVE_S: Final = 2.5
DOOR_DWELL_S: Final = 4.0
# Moving cars are stepped in slices this short so a frame is sent for every door-zone
# crossing, which lasts about 0.2 s at rated speed.
MAX_MOVING_STEP_S: Final = 0.05
PERSON_KG: Final = 75.0

# The status fields whose every change the contract says to report at once.
CHANGE_FIELDS: Final = ("moving", "door", "door_zone", "occupied", "mode", "alarm_button", "power")


@dataclass(frozen=True, slots=True)
class Trip:
    """A group of people travelling together from one landing to another."""

    origin: int
    destination: int
    people: int


class Car:
    def __init__(
        self, lowest: int, highest: int, rated_speed_mps: float, rated_kg: float, floor: int
    ) -> None:
        if not lowest <= floor <= highest or lowest >= highest:
            raise ValueError(f"floor {floor} not within {lowest}..{highest}")
        self.lowest = lowest
        self.highest = highest
        self.rated_speed_mps = rated_speed_mps
        self.capacity = max(1, int(rated_kg // PERSON_KG))
        self.rated_kg = rated_kg
        self.pos_m = floor * FLOOR_HEIGHT_M
        self.velocity = 0.0  # signed, m/s
        self.target: int | None = None
        self.speed_limit = rated_speed_mps
        self.door = "closed"
        self._door_timer = 0.0
        self.waiting: deque[Trip] = deque()
        self.riding: list[Trip] = []
        self.mode = "normal"
        self.power = "mains"
        self.alarm_button = False
        self.safety_circuit = "closed"
        # Set by a fault: the controller stops serving calls until someone clears it.
        self.blocked = False
        self.door_stuck = False  # the door mechanism no longer obeys
        self.pir_blind = False  # the occupancy sensor misses the people inside (`Pir`)

    # -- what the sensors read ------------------------------------------------------------

    @property
    def floor(self) -> int:
        nearest = round(self.pos_m / FLOOR_HEIGHT_M)
        return min(self.highest, max(self.lowest, nearest))

    @property
    def door_zone(self) -> bool:
        return abs(self.pos_m - self.floor * FLOOR_HEIGHT_M) <= ZONE_M

    @property
    def moving(self) -> bool:
        return self.velocity != 0.0

    @property
    def people(self) -> int:
        return sum(t.people for t in self.riding)

    @property
    def in_service(self) -> bool:
        return self.mode == "normal" and not self.blocked and self.power == "mains"

    def change_key(self) -> tuple[Any, ...]:
        """The `CHANGE_FIELDS` values, in order: read every sub-step, so kept cheap."""
        return (
            self.velocity != 0.0,
            self.door,
            self.door_zone,
            bool(self.riding) and not self.pir_blind,
            self.mode,
            self.alarm_button,
            self.power,
        )

    def status(self) -> dict[str, Any]:
        direction = "none" if self.velocity == 0 else ("up" if self.velocity > 0 else "down")
        return {
            **dict(zip(CHANGE_FIELDS, self.change_key(), strict=True)),
            "floor": self.floor,
            "direction": direction,
            "speed_mps": round(abs(self.velocity), 2),
            "load_pct": round(min(150.0, 100.0 * self.people * PERSON_KG / self.rated_kg), 1),
            "safety_circuit": self.safety_circuit,
        }

    # -- commands -------------------------------------------------------------------------

    def request(self, trip: Trip) -> None:
        self.waiting.append(trip)

    def emergency_stop(self) -> None:
        self.velocity = 0.0
        self.target = None

    def drive_to(self, floor: int, speed_mps: float | None = None) -> None:
        self.target = floor
        self.speed_limit = speed_mps or self.rated_speed_mps

    def open_door(self) -> None:
        if self.door in ("closed", "closing", "fault"):
            self.door, self._door_timer = "opening", DOOR_MOVE_S

    def close_door(self) -> None:
        if self.door in ("open", "opening", "fault"):
            self.door, self._door_timer = "closing", DOOR_MOVE_S

    def evacuate(self) -> None:
        """Everyone inside leaves (a crew frees them, or they step out at a landing)."""
        self.riding.clear()

    def abandon_calls(self) -> None:
        """People waiting for an out-of-order car give up and take the stairs."""
        self.waiting.clear()

    # -- time -----------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        if not self.door_stuck:
            self._door_step(dt)
        if self.target is not None:
            self._move(dt)
        if self.in_service:
            self._serve()

    def _door_step(self, dt: float) -> None:
        if self.door not in ("opening", "open", "closing"):
            return
        self._door_timer -= dt
        if self._door_timer > 0:
            return
        if self.door == "opening":
            self.door, self._door_timer = "open", DOOR_DWELL_S
            if self.in_service:
                self._exchange()
        elif self.door == "closing":
            self.door = "closed"
        elif self.in_service:  # open: a healthy car closes after its dwell
            self.close_door()

    def _exchange(self) -> None:
        here = self.floor
        self.riding = [t for t in self.riding if t.destination != here]
        while self.waiting and self.waiting[0].origin == here:
            if self.people + self.waiting[0].people > self.capacity:
                break
            self.riding.append(self.waiting.popleft())

    def _serve(self) -> None:
        if self.target is not None or self.door != "closed":
            return
        if self.riding:
            goal = self.riding[0].destination
        elif self.waiting:
            goal = self.waiting[0].origin
        else:
            return
        if goal == self.floor and self.door_zone:
            self.open_door()
        else:
            self.drive_to(goal)

    def _move(self, dt: float) -> None:
        assert self.target is not None
        goal_m = self.target * FLOOR_HEIGHT_M
        gap = goal_m - self.pos_m
        if abs(gap) <= ARRIVED_M:
            self.pos_m, self.velocity, self.target = goal_m, 0.0, None
            if self.in_service:
                self.open_door()
            return
        # Trapezoidal profile: accelerate to the limit, brake to reach the levelling
        # distance at creep speed, then creep to the sill.
        braking = math.sqrt(2 * ACCEL_MPS2 * max(0.0, abs(gap) - LEVELLING_M))
        speed = min(self.speed_limit, braking, abs(self.velocity) + ACCEL_MPS2 * dt)
        speed = max(LEVELLING_MPS, speed)
        travel = min(abs(gap), speed * dt)
        self.pos_m += math.copysign(travel, gap)
        self.velocity = math.copysign(speed, gap)


@dataclass(frozen=True)
class SensorConfig:
    """The car's occupancy sensor: a PIR sees movement, so it loses passengers who stand
    still for a few seconds (domain.md); 0 dropouts gives a perfect sensor."""

    pir_dropouts_per_min: float = 0.0  # per minute with people inside
    pir_dropout_s: tuple[float, float] = (2.0, 8.0)

    def __post_init__(self) -> None:
        low, high = self.pir_dropout_s
        if self.pir_dropouts_per_min < 0 or not 0 < low <= high:
            raise ValueError("pir_dropouts_per_min must be >= 0 and pir_dropout_s 0 < low <= high")


class Pir:
    """Makes a car's occupancy sensor drop out now and then while people are inside."""

    def __init__(self, car: Car, rng: random.Random, cfg: SensorConfig) -> None:
        self.car = car
        self.cfg = cfg
        self._rng = rng
        self._until = 0.0

    def step(self, now: float, dt: float) -> None:
        car = self.car
        if car.pir_blind:
            car.pir_blind = now < self._until and bool(car.riding)
        elif (
            self.cfg.pir_dropouts_per_min
            and car.riding
            and self._rng.random() < self.cfg.pir_dropouts_per_min * dt / 60
        ):
            car.pir_blind = True
            self._until = now + self._rng.uniform(*self.cfg.pir_dropout_s)

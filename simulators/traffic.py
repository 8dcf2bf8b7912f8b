"""Passengers: how many trips a car gets per hour, and where they go, by building type.

Residential buildings fill the car downwards in the morning peak and upwards in the
evening; offices do the same around office hours with a lunch peak; hospitals are busy all
day and never empty at night. The rates are per car and local hour of day.
"""

from __future__ import annotations

import random
from typing import Final, Literal

from simulators.car import Trip

Building = Literal["residential", "office", "hospital"]

# Trips per hour per car, for each local hour 0..23.
# fmt: off
_RATES: Final[dict[str, tuple[float, ...]]] = {
    #               00  01  02  03  04  05  06  07  08  09  10  11   (then 12..23)
    "residential": (2,  1,  1,  1,  1,  3,  12, 30, 34, 14, 8,  8,
                    12, 10, 8,  8,  10, 22, 30, 32, 26, 20, 10, 4),
    "office":      (.5, .5, .5, .5, .5, 1,  4,  40, 90, 45, 25, 40,
                    60, 45, 25, 25, 30, 70, 45, 15, 6,  3,  1,  .5),
    "hospital":    (12, 10, 8,  8,  8,  10, 18, 35, 55, 60, 60, 55,
                    50, 55, 60, 55, 50, 45, 40, 35, 28, 22, 18, 14),
}
# fmt: on

# Share of trips that start at the lobby (going up) and that end there (going down).
_LOBBY_SHARE: Final[dict[str, tuple[tuple[int, int, float, float], ...]]] = {
    # (first hour, last hour, share from lobby, share to lobby); otherwise 0.4 / 0.4
    "residential": ((6, 9, 0.1, 0.85), (17, 21, 0.8, 0.1)),
    "office": ((7, 10, 0.85, 0.05), (12, 13, 0.45, 0.45), (16, 19, 0.05, 0.85)),
    "hospital": (),
}


def trips_per_hour(building: Building, hour: int) -> float:
    return _RATES[building][hour % 24]


def arrivals(
    rng: random.Random,
    building: Building,
    hour: int,
    dt: float,
    lowest: int,
    highest: int,
    rate_factor: float = 1.0,
) -> list[Trip]:
    """The trips that start within the next `dt` seconds (a Poisson process per car)."""
    expected = trips_per_hour(building, hour) * rate_factor * dt / 3600.0
    trips: list[Trip] = []
    # For the short steps the fleet takes, expected << 1: a Bernoulli draw per step is a
    # Poisson process to within a fraction of a percent.
    while expected > 0:
        if rng.random() < min(1.0, expected):
            trips.append(_trip(rng, building, hour, lowest, highest))
        expected -= 1.0
    return trips


def _trip(rng: random.Random, building: Building, hour: int, lowest: int, highest: int) -> Trip:
    lobby = min(highest, max(lowest, 0))
    up_share, down_share = 0.4, 0.4
    for first, last, from_lobby, to_lobby in _LOBBY_SHARE[building]:
        if first <= hour % 24 <= last:
            up_share, down_share = from_lobby, to_lobby
    others = [f for f in range(lowest, highest + 1) if f != lobby]
    draw = rng.random()
    if draw < up_share:
        origin, destination = lobby, rng.choice(others)
    elif draw < up_share + down_share:
        origin, destination = rng.choice(others), lobby
    else:
        origin, destination = rng.sample(range(lowest, highest + 1), 2)
    # Mostly alone, sometimes a couple or a family.
    people = rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
    return Trip(origin, destination, people)

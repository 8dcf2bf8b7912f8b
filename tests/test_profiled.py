"""The simulator speaks a device profile: what a lift-numeric fleet sends maps back, through
the gateway's own profile, onto the statuses and faults the same fleet sends natively."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.clock import FixedClock
from gateway.frames import Frame, Rejected, decode
from gateway.profiles import MappedFrame, Profiles, load_profiles
from simulators.fleet import Fleet
from simulators.mqtt import ListPublisher
from simulators.scenario import parse_scenario
from tests.test_simulators import QUICK_CREW, START

PROFILES = load_profiles()
[LIFT_NUMERIC] = [p for p in PROFILES if p.name == "lift-numeric"]
SAME = ("floor", "moving", "direction", "door", "door_zone", "occupied", "alarm_button", "power")


def _run(
    share: float | None, cars: int = 3, hours: float = 2
) -> tuple[list[tuple[str, bytes, bool]], FixedClock]:
    scenario = parse_scenario(
        {
            "seed": 5,
            "start": START,
            "elevators": [{"prefix": "LN", "count": cars, "building": "residential", "traffic": 3}],
            "faults": {"entrapments_per_year": 3000, "faults_per_year": 5000},
            "crew": QUICK_CREW,
        }
    )
    clock = FixedClock(datetime.fromisoformat(START))
    publisher = ListPublisher()
    profile = None if share is None else LIFT_NUMERIC
    fleet = Fleet(scenario, clock, publisher, profile=profile, profile_share=share or 1.0)
    fleet.run(hours * 3600)
    fleet.stop()
    return publisher.messages, clock


def _through_profiles(messages: list[tuple[str, bytes, bool]], now: Any) -> list[Frame]:
    profiles = Profiles(PROFILES)
    frames: list[Frame] = []
    for topic, payload, _retain in messages:
        result = profiles.decode(topic, payload, now)
        assert not isinstance(result, Rejected), result
        frames += [result, *profiles.derive(result)]
    return frames


def test_a_lift_numeric_fleet_maps_back_onto_what_it_sends_natively() -> None:
    native, clock = _run(None)
    lift, _ = _run(1.0)
    assert {t.split("/")[0] for t, _p, _r in lift} == {"lift", "elevators"}  # + online
    assert all(t.endswith("/online") for t, _p, _r in lift if t.startswith("elevators/"))
    mapped = _through_profiles(lift, clock.now())
    assert any(isinstance(f, MappedFrame) for f in mapped)
    plain = [decode(t, p, clock.now()) for t, p, _r in native]

    def statuses(frames: list[Any]) -> dict[str, list[tuple[Any, ...]]]:
        """Each car's statuses, a repeat of the one before left out (the terminal repeats
        its last status with each change of its fault set)."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for f in frames:
            if f.kind == "status":
                seen = out.setdefault(f.elevator_id, [])
                values = tuple(getattr(f.body, k) for k in SAME)
                if not seen or seen[-1] != values:
                    seen.append(values)
        return out

    assert statuses(mapped) == statuses(plain)

    def raised(frames: list[Any]) -> set[tuple[str, str]]:
        expressible = set(LIFT_NUMERIC.faults.codes.values())  # type: ignore[union-attr]
        return {
            (f.elevator_id, f.body.code)
            for f in frames
            if f.kind == "event" and f.body.state == "raised" and f.body.code in expressible
        }

    assert "ENTRAPMENT" in {code for _e, code in raised(mapped)}
    assert raised(mapped) == raised(plain)


def test_a_share_of_the_fleet_speaks_the_profile() -> None:
    messages, clock = _run(0.5, cars=12, hours=0.2)
    speakers = {t.split("/")[1] for t, _p, _r in messages if t.startswith("lift/")}
    natives = {t.split("/")[1] for t, _p, _r in messages if t.endswith("/status")}
    assert speakers and natives and not speakers & natives
    _through_profiles(messages, clock.now())

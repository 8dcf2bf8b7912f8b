"""Detection scored on a labelled scenario: every injected entrapment found, no alert where
nothing was injected; and the cases that look like an entrapment but are not."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from gateway.frames import Frame, StatusBody
from gateway.rules import Alert, RuleEngine, load_rules
from gateway.rules.spec import CASE_STATUS_DEFAULTS
from simulators.labels import Label
from simulators.scenario import load_scenario, parse_scenario
from simulators.scoring import (
    CONTROLLER_RAISED,
    SCORING_SCENARIO,
    Run,
    Score,
    latency,
    run_scenario,
    score,
)

RULES = load_rules()
T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scored() -> tuple[Run, Score]:
    run = run_scenario(load_scenario(SCORING_SCENARIO), RULES)
    return run, score(run, RULES)


def test_the_scoring_scenario_injects_dozens_of_each_entrapment(scored: Any) -> None:
    run, result = scored
    groups = result.by_entrapment_kind()
    assert set(groups) == {"between_floors", "at_landing", "power_cut", CONTROLLER_RAISED}
    assert all(len(g) >= 24 for g in groups.values()), {k: len(g) for k, g in groups.items()}
    kinds = Counter(label.kind for label in run.labels)
    assert kinds["maintenance"] >= 10
    assert len(result.by_fault_code()) >= 10  # a mix of other faults
    assert run.stats.faults.total() > 250
    assert run.flaky and run.rejected.total() > 1000  # corrupt frames from flaky firmware


def test_every_injected_entrapment_is_detected(scored: Any) -> None:
    run, result = scored
    missed = [d.label for d in result.entrapments if d.alert is None]
    assert result.recall == 1.0, missed
    # At worst: the longest hold, after the PIR sees a passenger it lost, one tick late.
    sc = run.scenario
    bound = 45 + sc.sensors.pir_dropout_s[1] + 2 * sc.tick_s
    for kind, detections in result.by_entrapment_kind().items():
        lat = latency(detections)
        assert lat is not None and lat.max_s <= bound, (kind, lat)


def test_no_entrapment_alert_where_none_was_injected(scored: Any) -> None:
    _, result = scored
    assert result.false_entrapment == []
    assert result.unexplained == []


def test_every_fault_is_detected_unless_flaky_firmware_lost_its_event(scored: Any) -> None:
    run, result = scored
    missed = [d.label for d in result.faults if d.alert is None]
    assert all(label.elevator_id in run.flaky for label in missed), missed
    assert len(missed) <= 0.05 * len(result.faults)


# -- how labels and alerts are matched -----------------------------------------------------
def _alert(elevator: str, seconds: float, kind: str = "entrapment", rule: str = "r") -> Alert:
    incident_class = "entrapment" if kind == "entrapment" else "fault"
    return Alert(
        "fire", elevator, rule, kind, "critical", incident_class, T0 + timedelta(seconds=seconds)
    )


def _label(elevator: str, start: float, end: float | None, kind: str = "entrapment") -> Label:
    def at(s: float) -> str:
        return (T0 + timedelta(seconds=s)).isoformat()

    return Label(elevator, kind, "between_floors" if kind == "entrapment" else None, at(start),
                 None if end is None else at(end), (kind,))  # fmt: skip


def test_matching_window_is_label_start_to_end_plus_one_tick() -> None:
    scenario = parse_scenario({"tick_s": 2})
    labels = [
        _label("A", 100, 200),
        _label("B", 100, 200),
        _label("C", 100, None),  # still trapped at the end of the run
        _label("D", 990, None),  # started 10 s before the end: no rule could fire yet
        _label("E", 100, 200, kind="DOOR_LOCK_FAULT"),
    ]
    alerts = [
        _alert("A", 202),  # the end plus one tick: detected
        _alert("B", 99),  # before the label: a false alert, and B is missed
        _alert("B", 203),  # after the end plus one tick: false too
        _alert("C", 900),
        _alert("E", 150, "DOOR_LOCK_FAULT"),
        _alert("E", 250, "CONTROLLER_FAULT", rule="controller_fault"),  # nothing injected
    ]
    end = T0 + timedelta(seconds=1000)
    run = Run(scenario, T0, end, labels, alerts, None, Counter(), frozenset())  # type: ignore[arg-type]
    result = score(run, RULES)
    detected = {d.label.elevator_id: d.alert is not None for d in result.entrapments}
    assert detected == {"A": True, "B": False, "C": True}
    assert result.cut_off == Counter({"entrapment": 1})
    assert [d.latency_s for d in result.entrapments if d.alert] == [102.0, 800.0]
    assert [(a.elevator_id, a.at) for a in result.false_entrapment] == [
        ("B", T0 + timedelta(seconds=99)),
        ("B", T0 + timedelta(seconds=203)),
    ]
    assert [d.alert is not None for d in result.faults] == [True]
    assert [a.rule for a in result.unexplained] == ["controller_fault"]


# -- what looks like an entrapment but is not -------------------------------------------------
def _play(changes: dict[float, dict[str, Any]], until: float) -> list[Alert]:
    """Status frames every 5 s (and at each change) from a car whose fields change at the
    given times; every alert the default rules raise."""
    engine = RuleEngine(RULES)
    fields = dict(CASE_STATUS_DEFAULTS)
    alerts: list[Alert] = []
    times = sorted({*changes, *range(0, int(until), 5)})
    for t in times:
        fields.update(changes.get(t, {}))
        now = T0 + timedelta(seconds=t)
        body = msgspec.convert(
            {**fields, "v": 1, "elevator_id": "E1", "seq": 0, "boot": 1, "ts": now}, StatusBody
        )
        alerts += engine.observe(Frame("status", "E1", now, body), now)
    return alerts + engine.tick(T0 + timedelta(seconds=until))


@pytest.mark.parametrize("door_zone", [False, True])
def test_a_technician_in_inspection_mode_in_a_stopped_closed_car_is_no_alert(
    door_zone: bool,
) -> None:
    alerts = _play(
        {
            0: {"mode": "inspection", "occupied": True, "door_zone": door_zone},
            120: {"alarm_button": True},  # testing the alarm too
            200: {"alarm_button": False},
            # the PIR loses the technician standing still at the controls
            300: {"occupied": False},
            310: {"occupied": True},
        },
        until=900,
    )
    assert alerts == []


def test_a_flickering_pir_during_a_normal_ride_is_no_alert() -> None:
    ride = {"moving": True, "direction": "up", "speed_mps": 1.75, "door_zone": False}
    stop = {"moving": False, "direction": "none", "speed_mps": 0.0, "door_zone": True}
    alerts = _play(
        {
            0: {"occupied": True, "door": "open"},
            4: {"door": "closing", "occupied": False},  # still passenger: PIR drops out
            7: {"door": "closed", "occupied": True},
            8: {**ride, "occupied": False},
            12: {"occupied": True},
            14: {"occupied": False},
            20: stop,
            21: {"door": "opening"},
            24: {"door": "open", "occupied": True},
            26: {"occupied": False},  # the passenger steps out
            29: {"door": "closing"},
            32: {"door": "closed"},
        },
        until=900,
    )
    assert alerts == []


def test_passengers_riding_normally_raise_no_alert_at_all() -> None:
    scenario = parse_scenario(
        {
            "seed": 5,
            "start": "2026-11-26T07:30:00+08:00",
            "tick_s": 2,
            "elevators": [
                {"prefix": "RES", "count": 6, "building": "residential", "traffic": 3},
                {"prefix": "OFF", "count": 2, "building": "office", "floors": [0, 20]},
            ],
            "faults": {"entrapments_per_year": 0, "faults_per_year": 0, "reboots_per_year": 0},
        }
    )
    run = run_scenario(scenario, RULES, duration_s=1800)
    assert run.stats.frames["status"] > 1000
    assert run.alerts == []

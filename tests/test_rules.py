"""The rule engine over the default rules: pure, driven by hand-set times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames import EventBody, Frame, StatusBody
from gateway.rules import Alert, RuleEngine, RuleError, RuleSet, load_rules
from gateway.rules.cases import run_case
from gateway.rules.spec import CASE_STATUS_DEFAULTS, DEFAULT_RULES_DIR

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RULES = load_rules()
# The same rules for cars that are never silent long enough to be offline.
QUIET = RuleSet(RULES.rules, RULES.mutes, RULES.settings.model_copy(update={"silence": 1e9}))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(elevator: str = "E1", **fields: Any) -> Frame:
    body = msgspec.convert(
        {**CASE_STATUS_DEFAULTS, **fields, "v": 1, "elevator_id": elevator, "seq": 0, "boot": 1,
         "ts": T0},
        StatusBody,
    )  # fmt: skip
    return Frame("status", elevator, T0, body)


def event(code: str, state: str = "raised", elevator: str = "E1") -> Frame:
    body = EventBody(v=1, elevator_id=elevator, seq=0, boot=1, ts=T0, code=code, state=state)
    return Frame("event", elevator, T0, body)


def online(value: bool, elevator: str = "E1") -> Frame:
    return Frame("online", elevator, T0, None, online=value)


def fired(alerts: list[Alert]) -> list[tuple[str, str, float]]:
    return [(a.action, a.rule, (a.at - T0).total_seconds()) for a in alerts]


TRAPPED = {"occupied": True, "door_zone": False}


# -- the stored cases -------------------------------------------------------------------------
@pytest.mark.parametrize("case", RULES.cases, ids=lambda c: c.name)
def test_default_case(case: Any) -> None:
    result = run_case(RULES, case)
    assert result.passed, (result.missing, result.unexpected)


def test_every_default_rule_has_cases_that_fire_and_clear_it() -> None:
    expected = {(e.fire or "", "fire") for c in RULES.cases for e in c.expect if e.fire}
    expected |= {(e.clear or "", "clear") for c in RULES.cases for e in c.expect if e.clear}
    for rule in RULES.rules:
        assert (rule.id, "fire") in expected, rule.id
        assert (rule.id, "clear") in expected, rule.id


def test_every_fault_catalogue_code_that_opens_an_incident_has_a_rule() -> None:
    kinds = {r.opens.kind for r in RULES.rules}
    opening = {
        "ENTRAPMENT", "DOOR_OPEN_WHILE_MOVING", "UNINTENDED_MOVEMENT", "OVERSPEED",
        "OVERTRAVEL_TOP", "OVERTRAVEL_BOTTOM", "SAFETY_CIRCUIT_OPEN", "DOOR_LOCK_FAULT",
        "DOOR_FAIL_TO_OPEN", "DOOR_FAIL_TO_CLOSE", "DOOR_REPEATED_CYCLING", "POWER_FAILURE",
        "CONTROLLER_FAULT", "STOP_OUTSIDE_DOOR_ZONE",
    }  # fmt: skip
    codes = {r.condition.code for r in RULES.rules if r.stream == "event"}
    assert opening - {"ENTRAPMENT"} <= kinds
    assert opening <= codes | {"STOP_OUTSIDE_DOOR_ZONE"}
    assert "CREW_ON_SITE" not in codes


# -- holds and ticks -----------------------------------------------------------------------
def test_a_hold_fires_on_tick_with_no_further_frame() -> None:
    engine = RuleEngine(QUIET)
    assert engine.observe(status(**TRAPPED), at(0)) == []
    assert engine.tick(at(19.9)) == []
    alerts = engine.tick(at(25))
    assert fired(alerts) == [("fire", "trapped_between_floors", 20.0)]
    a = alerts[0]
    assert (a.kind, a.severity, a.incident_class, a.elevator_id) == (
        "entrapment", "critical", "entrapment", "E1"
    )  # fmt: skip
    assert a.at == at(20) and a.at.tzinfo is not None
    assert engine.tick(at(26)) == []


def test_a_late_frame_first_fires_what_fell_due_before_it() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status(**TRAPPED), at(0))
    alerts = engine.observe(status(moving=True, door_zone=False, occupied=True), at(21))
    assert fired(alerts) == [("fire", "trapped_between_floors", 20.0)]
    assert engine.tick(at(22)) == []  # the heap entry is spent


def test_a_broken_condition_resets_the_hold() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status(**TRAPPED), at(0))
    engine.observe(status(**TRAPPED, moving=True), at(15))
    engine.observe(status(**TRAPPED), at(16))
    assert engine.tick(at(35)) == []
    assert fired(engine.tick(at(36))) == [("fire", "trapped_between_floors", 36.0)]


def test_silence_marks_offline_once_and_a_frame_brings_it_back() -> None:
    engine = RuleEngine(RULES)
    engine.observe(status(), at(0))
    engine.observe(status(), at(10))
    assert engine.tick(at(39)) == []
    assert fired(engine.tick(at(45))) == [("fire", "offline", 40.0)]
    assert engine.tick(at(200)) == []
    assert fired(engine.observe(status(), at(300))) == []
    engine.observe(status(), at(310))
    assert fired(engine.tick(at(330))) == [("clear", "offline", 330.0)]


def test_no_car_is_silent_while_the_gateway_cannot_hear_nor_a_window_after() -> None:
    engine = RuleEngine(RULES)
    engine.observe(status("E1"), at(0))
    engine.observe(status("E2", **TRAPPED), at(0))
    alerts: list[Alert] = []
    for t in range(5, 60, 5):  # the broker is away from 5 s to 55 s
        engine.resume(at(t))
        alerts += engine.tick(at(t))
    # Holds still run (a trapped car may fall silent); silence waits until 55 + 30 s.
    assert fired(alerts) == [
        ("fire", "trapped_between_floors", 20.0),
        ("fire", "stop_outside_door_zone", 45.0),
    ]
    assert engine.tick(at(84)) == []
    engine.observe(status("E2", **TRAPPED), at(70))  # E2 is heard again; E1 stays silent
    assert fired(engine.tick(at(86))) == [("fire", "offline", 85.0)]


def test_at_one_instant_holds_conclude_before_silences_in_elevator_order() -> None:
    """A hold that ends as the car's silence window does was heard out while it was online;
    silences due together go by elevator id, so a replay alerts in the same order."""
    engine = RuleEngine(RULES)  # silence: 30 s, as alarm_held's hold
    engine.observe(status("E2", alarm_button=True, occupied=True), at(0))
    engine.observe(status("E1"), at(0))
    alerts = engine.tick(at(31))
    assert [(a.elevator_id, *f) for a, f in zip(alerts, fired(alerts), strict=True)] == [
        ("E2", "fire", "alarm_held", 30.0),
        ("E1", "fire", "offline", 30.0),
        ("E2", "fire", "offline", 30.0),
    ]


def test_the_heap_holds_one_silence_timer_per_elevator() -> None:
    engine = RuleEngine(RULES)
    for i in range(1000):
        engine.observe(status(), at(i * 0.01))
    assert len(engine._silent) == 1


# -- signal hygiene -----------------------------------------------------------------------
def test_occupancy_latches_behind_a_closed_door_until_it_opens() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status(**TRAPPED), at(0))
    engine.observe(status(door_zone=False), at(5))  # PIR loses a passenger standing still
    assert fired(engine.tick(at(21))) == [("fire", "trapped_between_floors", 20.0)]

    engine = RuleEngine(QUIET)
    engine.observe(status(occupied=True, door="open"), at(0))
    engine.observe(status(occupied=False, door="open"), at(3))  # they walked out
    engine.observe(status(door_zone=False), at(5))
    assert engine.tick(at(40)) == []


def test_door_switch_chatter_is_debounced() -> None:
    engine = RuleEngine(QUIET)
    out: list[Alert] = []
    for i in range(20):
        out += engine.observe(event("DOOR_OPEN_WHILE_MOVING"), at(i * 0.5))
        out += engine.observe(event("DOOR_OPEN_WHILE_MOVING", "cleared"), at(i * 0.5 + 0.3))
        out += engine.tick(at(i * 0.5 + 0.4))
    assert out == []
    engine.observe(event("DOOR_OPEN_WHILE_MOVING"), at(20))
    assert fired(engine.tick(at(21))) == [("fire", "door_open_while_moving", 21.0)]


def test_a_flapping_signal_fires_once_per_episode() -> None:
    engine = RuleEngine(QUIET)
    out = engine.observe(status(power="battery"), at(0))
    out += engine.tick(at(30))
    for i in range(10):  # mains comes and goes every 5 s
        out += engine.observe(status(power="mains" if i % 2 == 0 else "battery"), at(31 + 5 * i))
        out += engine.tick(at(33 + 5 * i))
    out += engine.observe(status(), at(100))
    out += engine.tick(at(200))
    assert fired(out) == [("fire", "power_failure", 30.0), ("clear", "power_failure", 130.0)]


# -- escalation and grouping ---------------------------------------------------------------
def test_alarm_held_alone_is_major_and_critical_when_trapped() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status(occupied=True, door="open", alarm_button=True), at(0))
    assert [a.severity for a in engine.tick(at(30))] == ["major"]

    engine = RuleEngine(QUIET)
    engine.observe(status(**TRAPPED, alarm_button=True), at(0))
    alerts = engine.tick(at(30))
    assert [(a.rule, a.severity) for a in alerts] == [
        ("trapped_between_floors", "critical"),
        ("alarm_held", "critical"),
    ]


def test_a_site_power_cut_groups_the_cars_and_stands_for_their_power_failures() -> None:
    sites = {"A": "S", "B": "S", "C": "S"}
    engine = RuleEngine(QUIET, site_of=sites.get)
    out = engine.observe(status("A", power="battery", occupied=True), at(0))
    out += engine.observe(status("B", power="off"), at(1))
    out += engine.observe(status("C", power="off", occupied=True, door_zone=False), at(2))
    out += engine.tick(at(40))
    site = [a for a in out if a.rule == "site_power_cut"]
    assert len(site) == 1
    assert (site[0].elevator_id, site[0].kind, site[0].group) == (
        "S",
        "power_cut",
        "site:S:power_cut",
    )
    assert "A, B" in site[0].detail
    assert not [a for a in out if a.kind == "POWER_FAILURE"]
    trapped = {a.elevator_id for a in out if a.kind == "entrapment"}
    assert trapped == {"A", "C"}
    assert {a.group for a in out if a.kind == "entrapment"} == {"site:S:power_cut"}
    out = [a for f in ("A", "B", "C") for a in engine.observe(status(f), at(50))]
    assert [a.action for a in out if a.rule == "site_power_cut"] == ["clear"]


def test_a_lone_car_off_mains_is_its_own_power_failure() -> None:
    engine = RuleEngine(QUIET, site_of=lambda _e: "S")
    engine.observe(status(power="battery"), at(0))
    alerts = engine.tick(at(30))
    assert [(a.rule, a.group) for a in alerts] == [("power_failure", None)]


# -- reload --------------------------------------------------------------------------------
def _edited(tmp_path: Path, old: str, new: str) -> RuleSet:
    for src in DEFAULT_RULES_DIR.glob("*.yaml"):
        (tmp_path / src.name).write_text(src.read_text().replace(old, new))
    rules = load_rules(tmp_path)
    return RuleSet(rules.rules, rules.mutes, QUIET.settings)


def test_reload_keeps_episodes_of_unchanged_rules(tmp_path: Path) -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status(**TRAPPED, power="battery"), at(0))
    # power_failure's hold changes; the entrapment rules do not.
    engine.replace_rules(
        _edited(
            tmp_path,
            "hold: 30s\n    opens: {kind: POWER_FAILURE",
            "hold: 31s\n    opens: {kind: POWER_FAILURE",
        )
    )
    alerts = engine.tick(at(60))
    assert [a.rule for a in alerts] == [
        "trapped_between_floors",
        "trapped_power_cut",
        "stop_outside_door_zone",
    ]
    # the changed rule starts over from the next frame
    engine.observe(status(**TRAPPED, power="battery"), at(61))
    assert [a.rule for a in engine.tick(at(92))] == ["power_failure"]


def test_a_broken_file_is_refused_and_the_old_rules_stay(tmp_path: Path) -> None:
    engine = RuleEngine(RULES)
    engine.observe(status(**TRAPPED), at(0))
    with pytest.raises(RuleError) as exc:
        _edited(tmp_path, "door_zone and occupied_latched", "door_zone and occupied_latchd")
    assert "entrapment.yaml:" in str(exc.value)
    assert [a.rule for a in engine.tick(at(20))] == ["trapped_between_floors"]


# -- properties ------------------------------------------------------------------------------
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "moving": st.booleans(),
        "door": st.sampled_from(["open", "closed", "closing", "fault"]),
        "door_zone": st.booleans(),
        "occupied": st.booleans(),
        "mode": st.sampled_from(["normal", "inspection", "fire"]),
        "alarm_button": st.booleans(),
        "power": st.sampled_from(["mains", "battery", "off"]),
    },
)
_STEP = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(["A", "B"]), _FIELDS),
    st.tuples(
        st.just("event"),
        st.sampled_from(["A", "B"]),
        st.tuples(
            st.sampled_from(["ENTRAPMENT", "OVERSPEED", "DOOR_OPEN_WHILE_MOVING"]),
            st.sampled_from(["raised", "cleared"]),
        ),
    ),
    st.tuples(st.just("online"), st.sampled_from(["A", "B"]), st.booleans()),
)
_SCRIPT = st.lists(st.tuples(st.floats(0.1, 40), _STEP), min_size=1, max_size=40)


def _play(script: list[Any], tick_every: float) -> list[Alert]:
    engine = RuleEngine(RULES, site_of=lambda _e: "S")
    out: list[Alert] = []
    t, next_tick = 0.0, 0.0
    for gap, (kind, elevator, arg) in script:
        t += gap
        while next_tick <= t:
            out += engine.tick(at(next_tick))
            next_tick += tick_every
        if kind == "status":
            frame = status(elevator, **arg)
        elif kind == "event":
            frame = event(*arg, elevator=elevator)
        else:
            frame = online(arg, elevator)
        out += engine.observe(frame, at(t))
    out += engine.tick(at(t + 1000))
    return out


@settings(max_examples=150, deadline=None)
@given(_SCRIPT, st.sampled_from([0.2, 1.0, 7.0]))
def test_alerts_do_not_depend_on_how_often_tick_is_called(script: list[Any], every: float) -> None:
    key = lambda a: (a.at, a.elevator_id, a.rule, a.action)  # noqa: E731
    assert sorted(_play(script, every), key=key) == sorted(_play(script, 10_000.0), key=key)


@settings(max_examples=150, deadline=None)
@given(_SCRIPT)
def test_fire_and_clear_alternate_per_elevator_and_rule(script: list[Any]) -> None:
    last: dict[tuple[str, str], str] = {}
    for a in _play(script, 1.0):
        assert last.get((a.elevator_id, a.rule), "clear") != a.action, a
        last[(a.elevator_id, a.rule)] = a.action


def test_cars_in_the_same_state_share_one_status_and_a_change_is_their_own() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(status("E1", floor=4), at(0))
    engine.observe(status("E2", floor=4, speed_mps=0.5), at(0))
    one, two = engine._cars["E1"], engine._cars["E2"]
    assert one.status is two.status  # the memory a car costs: one reference
    engine.observe(status("E2", floor=5), at(1))
    assert (one.status.floor, two.status.floor) == (4, 5)
    with pytest.raises(AttributeError):
        one.status.floor = 6  # it is another car's too


# -- eviction ---------------------------------------------------------------------------------
def test_cars_long_unheard_are_forgotten_and_start_afresh_when_back() -> None:
    engine = RuleEngine(RULES)
    engine.observe(status("E1"), at(0))
    engine.observe(status("E2"), at(0))
    engine.observe(online(True, "E3"), at(0))  # a retained state, never a status frame
    assert fired(engine.tick(at(31))) == [("fire", "offline", 30)] * 3
    engine.observe(status("E2"), at(3000))
    engine.tick(at(3600))  # E2: back, then silent again
    assert engine.last_status_at("E1") == at(0) and engine.last_status_at("E3") is None
    assert sorted(engine.evict(at(3600), idle_s=3000)) == ["E1", "E3"]
    assert sorted(engine.tracked()) == ["E2"]
    assert engine.last_status_at("E1") is None
    # Back after all: a car like any new one, online, with nothing to clear or fire.
    assert engine.observe(status("E1"), at(3700)) == []
    assert fired(engine.tick(at(3731))) == [("fire", "offline", 3730)]


def test_a_car_with_a_hold_running_is_not_forgotten() -> None:
    engine = RuleEngine(QUIET)
    engine.observe(event("ENTRAPMENT"), at(0))
    assert engine.evict(at(0), idle_s=-1) == []
    assert engine.is_liveness("offline") and not engine.is_liveness("trapped_between_floors")

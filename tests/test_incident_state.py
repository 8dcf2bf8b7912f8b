"""The lifecycle and the SLA arithmetic, on a simulated clock (pure: no I/O, no sleeping)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.incidents import sla, state
from gateway.incidents.model import STATES, Incident

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
LIMITS = sla.Limits(arrival_s=1800, warning_s=1200, ack_s=180)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make(incident_class: str = "entrapment", **changes: object) -> Incident:
    c = sla.clocks(T0, LIMITS, incident_class)
    base = Incident(
        id="INC-1", elevator_id="E1", kind="entrapment", severity="critical",
        incident_class=incident_class, state="open", rule="trapped_between_floors",
        source="telemetry", opened_at=T0, deadline_at=c.deadline_at, warning_at=c.warning_at,
        ack_deadline_at=c.ack_deadline_at, report_deadline_at=c.report_deadline_at, updated_at=T0,
    )  # fmt: skip
    return replace(base, **changes)


def test_clocks() -> None:
    c = sla.clocks(T0, LIMITS, "accident")
    assert (c.deadline_at, c.warning_at, c.ack_deadline_at) == (s(1800), s(1200), s(180))
    assert c.report_deadline_at == s(3600)
    assert sla.clocks(T0, LIMITS, "entrapment").report_deadline_at is None


# -- transitions ---------------------------------------------------------------------------
def _step(incident: Incident, target: str, t: float) -> Incident:
    at = s(t)
    match target:
        case "acknowledged":
            return state.acknowledge(incident, "ana", at)
        case "dispatched":
            return state.dispatch(incident, "crew-7", "Acme Lifts", at, "ana")
        case "arrived":
            return state.arrival(incident, at, "reported", at, "crew-7")
        case "released":
            return state.release(incident, at, at, "crew-7")
        case "closed":
            return state.close(incident, "rescued", None, at, "ana")
    raise AssertionError(target)


def test_the_whole_lifecycle_with_timeline() -> None:
    incident = make()
    for t, target in enumerate(STATES[1:], start=1):
        incident = _step(incident, target, t * 60)
        assert incident.state == target
    assert [e.what.split()[0] for e in incident.timeline] == [
        "acknowledged",
        "crew",
        "arrival",
        "released",
        "closed:",
    ]
    assert incident.arrival_s == 180 and incident.sla == "met"
    assert incident.arrival_evidence == "reported"


@pytest.mark.parametrize("target", STATES[1:])
def test_any_step_may_be_skipped_to(target: str) -> None:
    assert _step(make(), target, 60).state == target


@pytest.mark.parametrize("later", range(2, len(STATES) - 1))
def test_never_backward(later: int) -> None:
    """After a later step, an earlier one records its facts but the state stays."""
    incident = _step(make(), STATES[later], 60)
    after = _step(incident, "dispatched", 120)
    assert after.state == STATES[later]
    with pytest.raises(state.TransitionError, match="already acknowledged"):
        _step(incident, "acknowledged", 120)


@pytest.mark.parametrize("target", STATES[2:])
def test_a_forward_step_is_the_acknowledgement_when_none_was_recorded(target: str) -> None:
    incident = _step(make(), target, 60)
    assert incident.acknowledged_at == s(60)
    assert incident.timeline[0].what.startswith("acknowledged (implied by ")
    assert all(d.kind != "ack_overdue" for d in sla.due(incident, s(5000), LIMITS.ack_s))
    # An explicit acknowledgement recorded earlier is kept.
    acked = _step(_step(make(), "acknowledged", 30), target, 60)
    assert acked.acknowledged_at == s(30)
    assert sum(e.what.startswith("acknowledged") for e in acked.timeline) == 1


@pytest.mark.parametrize("target", STATES[1:])
def test_nothing_after_close(target: str) -> None:
    closed = _step(make(), "closed", 60)
    with pytest.raises(state.TransitionError, match="closed"):
        _step(closed, target, 120)


def test_one_time_steps_cannot_repeat() -> None:
    acked = _step(make(), "acknowledged", 60)
    with pytest.raises(state.TransitionError, match="already acknowledged"):
        _step(acked, "acknowledged", 90)
    released = _step(make(), "released", 60)
    with pytest.raises(state.TransitionError, match="already released"):
        _step(released, "released", 90)


def test_times_before_opening_are_refused() -> None:
    with pytest.raises(state.TransitionError):
        state.arrival(make(), s(-1), "reported", s(10), "crew")
    with pytest.raises(state.TransitionError):
        state.release(make(), s(-1), s(10), "crew")
    with pytest.raises(state.TransitionError, match="resolution"):
        state.close(make(), "vanished", None, s(10), "ana")


# -- arrival evidence ----------------------------------------------------------------------
def test_earliest_evidence_wins_and_both_kinds_are_named() -> None:
    incident = state.arrival(make(), s(600), "reported", s(650), "crew")
    incident = state.arrival(incident, s(540), "telemetry", s(660), "telemetry")
    assert incident.arrived_at == s(540)
    assert incident.arrival_evidence == "reported+telemetry"
    later = state.arrival(incident, s(700), "telemetry", s(700), "telemetry")
    assert later.arrived_at == s(540) and later.arrival_telemetry_at == s(540)


# -- the SLA clock ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrival", "expected"), [(1799, "met"), (1800, "breached"), (1801, "breached")]
)
def test_arrival_around_the_deadline(arrival: float, expected: str) -> None:
    incident = state.arrival(make(), s(arrival), "reported", s(arrival), "crew")
    assert incident.sla == expected


def test_warning_breach_exactly_at_the_deadline_and_nothing_twice() -> None:
    incident = make(acknowledged_at=s(10))
    assert sla.due(incident, s(1199), LIMITS.ack_s) == []
    assert [d.kind for d in sla.due(incident, s(1200), LIMITS.ack_s)] == ["warning"]
    incident = replace(incident, warned_at=s(1200))
    assert sla.due(incident, s(1799.999), LIMITS.ack_s) == []
    assert sla.next_due_at(incident, LIMITS.ack_s) == s(1800)
    due = sla.due(incident, s(1800), LIMITS.ack_s)
    assert [(d.kind, d.severity) for d in due] == [("breach", "critical")]
    assert sla.sla_status(incident, s(1800)) == "breached"
    incident = replace(incident, breach_alerted_at=s(1800), sla="breached")
    assert sla.due(incident, s(5000), LIMITS.ack_s) == []
    assert sla.next_due_at(incident, LIMITS.ack_s) is None


def test_arrival_stops_the_arrival_clock() -> None:
    incident = state.arrival(make(acknowledged_at=s(5)), s(600), "reported", s(600), "crew")
    assert sla.due(incident, s(4000), LIMITS.ack_s) == []
    assert incident.sla == "met"


def test_a_breach_missed_while_down_fires_once_late() -> None:
    incident = make(acknowledged_at=s(5), warned_at=s(1200))
    due = sla.due(incident, s(7200), LIMITS.ack_s)
    assert [d.kind for d in due] == ["breach"]


def test_ack_re_alerts_rise_and_stop_when_acknowledged() -> None:
    incident = make(severity="minor", arrived_at=s(60), arrival_reported_at=s(60))
    assert sla.due(incident, s(179), LIMITS.ack_s) == []
    first = sla.due(incident, s(180), LIMITS.ack_s)
    assert [(d.kind, d.level, d.severity) for d in first] == [("ack_overdue", 1, "major")]
    incident = replace(incident, ack_alerts=1)
    assert sla.next_due_at(incident, LIMITS.ack_s) == s(360)
    second = sla.due(incident, s(360), LIMITS.ack_s)
    assert [(d.level, d.severity) for d in second] == [(2, "critical")]
    # Down for a long time: one alert covers the missed periods.
    assert [d.level for d in sla.due(incident, s(1000), LIMITS.ack_s)] == [5]
    acked = state.acknowledge(incident, "ana", s(400))
    assert sla.due(acked, s(2000), LIMITS.ack_s) == []


def test_accident_report_clock() -> None:
    incident = make("accident", acknowledged_at=s(5), arrived_at=s(60), arrival_reported_at=s(60))
    assert sla.due(incident, s(3599), LIMITS.ack_s) == []
    assert [d.kind for d in sla.due(incident, s(3600), LIMITS.ack_s)] == ["report_overdue"]
    reported = replace(incident, regulator_reported_at=s(1000))
    assert sla.due(reported, s(9999), LIMITS.ack_s) == []
    assert sla.next_due_at(reported, LIMITS.ack_s) is None


def test_closed_incidents_need_no_ticker() -> None:
    closed = _step(make(), "closed", 60)
    assert sla.due(closed, s(99999), LIMITS.ack_s) == []
    assert sla.next_due_at(closed, LIMITS.ack_s) is None


def test_faults_have_no_arrival_alarms_but_must_be_acknowledged() -> None:
    fault = make("fault", kind="DOOR_LOCK_FAULT", severity="major")
    assert [d.kind for d in sla.due(fault, s(99999), LIMITS.ack_s)] == ["ack_overdue"]
    assert sla.sla_status(fault, s(99999)) == "pending"
    arrived = state.arrival(fault, s(2000), "reported", s(2000), "crew")
    assert arrived.sla == "pending"


def test_no_clock_stays_due_once_a_late_breach_has_fired() -> None:
    """Opened long ago (a late phone report, or down across warning and deadline): the
    breach fires, the missed warning is not owed, and nothing is due after."""
    incident = make(acknowledged_at=s(5))
    assert [d.kind for d in sla.due(incident, s(4000), LIMITS.ack_s)] == ["breach"]
    fired = replace(incident, breach_alerted_at=s(4000), sla="breached")
    assert sla.due(fired, s(4000.25), LIMITS.ack_s) == []
    assert sla.next_due_at(fired, LIMITS.ack_s) is None

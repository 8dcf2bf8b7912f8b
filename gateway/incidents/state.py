"""The incident lifecycle as pure transitions: open → acknowledged → dispatched → arrived →
released → closed. Steps may be skipped forward, never taken back; a step that comes late
(a dispatch recorded after the crew already arrived) records its facts without moving the
state back. Acting on a closed incident, or repeating a one-time step, is refused. Any
forward step is also the acknowledgement, at that moment, when none was recorded (someone
plainly saw the incident): its re-alerts stop and the 3-minute response counts it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from gateway.incidents import sla
from gateway.incidents.model import RESOLUTIONS, STATES, Incident, TimelineEntry

_ORDER = {state: n for n, state in enumerate(STATES)}


class TransitionError(ValueError):
    """The action is not allowed in the incident's current state."""


class BeforeOpening(TransitionError):
    """A time given for a step is earlier than the incident itself (an invalid field)."""


def _forward(current: str, target: str) -> str:
    return target if _ORDER[target] > _ORDER[current] else current


def _check_open(incident: Incident, action: str) -> None:
    if not incident.is_open:
        raise TransitionError(f"cannot {action}: incident {incident.id} is closed")


def _with(incident: Incident, now: datetime, what: str, by: str, **changes: object) -> Incident:
    updated = replace(incident, **changes, updated_at=now)
    entry = TimelineEntry(now, what, by)
    return replace(updated, sla=sla.sla_status(updated, now), timeline=(*incident.timeline, entry))


def _forward_step(
    incident: Incident, step: str, now: datetime, what: str, by: str, **changes: object
) -> Incident:
    """A step past `acknowledged` (`step` names it): acknowledges first, at `now`, if
    nobody had."""
    if incident.acknowledged_at is None:
        incident = _with(
            incident, now, f"acknowledged (implied by {step})", by,
            acknowledged_at=now, acknowledged_by=by,
        )  # fmt: skip
    return _with(incident, now, what, by, **changes)


def acknowledge(incident: Incident, by: str, now: datetime) -> Incident:
    _check_open(incident, "acknowledge")
    if incident.acknowledged_at is not None:
        raise TransitionError(f"incident {incident.id} was already acknowledged")
    return _with(
        incident,
        now,
        "acknowledged",
        by,
        acknowledged_at=now,
        acknowledged_by=by,
        state=_forward(incident.state, "acknowledged"),
    )


def dispatch(
    incident: Incident, crew_id: str, company: str | None, now: datetime, by: str
) -> Incident:
    _check_open(incident, "dispatch")
    what = f"crew {crew_id} dispatched" + (f" ({company})" if company else "")
    return _forward_step(
        incident,
        "dispatch",
        now,
        what,
        by,
        dispatched_at=incident.dispatched_at or now,
        crew_id=crew_id,
        maintenance_company=company or incident.maintenance_company,
        state=_forward(incident.state, "dispatched"),
    )


def arrival(incident: Incident, at: datetime, evidence: str, now: datetime, by: str) -> Incident:
    """Arrival evidence (`reported` by the crew or seen in `telemetry`); earliest wins."""
    _check_open(incident, "record an arrival")
    if at < incident.opened_at:
        raise BeforeOpening("arrival time is before the incident opened")
    column = f"arrival_{evidence}_at"
    previous = getattr(incident, column)
    first = at if previous is None else min(previous, at)
    arrived_at = at if incident.arrived_at is None else min(incident.arrived_at, at)
    what = f"arrival {evidence} at {at.isoformat()}"
    return _forward_step(
        incident,
        "arrival",
        now,
        what,
        by,
        **{column: first},
        arrived_at=arrived_at,
        state=_forward(incident.state, "arrived"),
    )


def release(incident: Incident, at: datetime, now: datetime, by: str) -> Incident:
    _check_open(incident, "release")
    if incident.released_at is not None:
        raise TransitionError(f"incident {incident.id} was already released")
    if at < incident.opened_at:
        raise BeforeOpening("release time is before the incident opened")
    return _forward_step(
        incident,
        "release",
        now,
        f"released at {at.isoformat()}",
        by,
        released_at=at,
        state=_forward(incident.state, "released"),
    )


def close(
    incident: Incident, resolution: str, note: str | None, now: datetime, by: str
) -> Incident:
    _check_open(incident, "close")
    if resolution not in RESOLUTIONS:
        raise TransitionError(f"unknown resolution {resolution!r}")
    what = f"closed: {resolution}" + (f" ({note})" if note else "")
    return _forward_step(
        incident, "close", now, what, by, closed_at=now, resolution=resolution, state="closed"
    )


def restart_arrival_clock(incident: Incident, limits: sla.Limits, now: datetime) -> Incident:
    """In a district whose arrival clock starts at the dispatch order: the deadline and the
    warning from `dispatched_at` (until then they ran from the report, so an entrapment that
    nobody dispatches still warns and breaches)."""
    if incident.incident_class not in sla.ARRIVAL_CLASSES or incident.dispatched_at is None:
        return incident
    clocks = sla.clocks(incident.dispatched_at, limits, incident.incident_class)
    what = (
        f"arrival clock from the dispatch (district rule): deadline {clocks.deadline_at:%H:%M:%S}Z"
    )
    return _with(
        incident, now, what, "gateway", deadline_at=clocks.deadline_at, warning_at=clocks.warning_at
    )


def rescue_details(
    incident: Incident,
    people_trapped: int | None,
    rescue_level: int | None,
    now: datetime,
    by: str,
) -> Incident:
    changes = {
        k: v
        for k, v in (("people_trapped", people_trapped), ("rescue_level", rescue_level))
        if v is not None
    }
    what = "rescue details: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
    return _with(incident, now, what, by, **changes)


def note(incident: Incident, what: str, by: str, now: datetime) -> Incident:
    """A timeline entry that changes nothing else (a join, a clock alert, a clearance)."""
    return _with(incident, now, what, by)

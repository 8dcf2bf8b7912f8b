"""The incident as data, and its JSON form (contract §3, "Incident JSON")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final

STATES: Final = ("open", "acknowledged", "dispatched", "arrived", "released", "closed")
RESOLUTIONS: Final = ("rescued", "false_alarm", "self_recovered", "other")
SOURCES: Final = ("telemetry", "phone", "citizen", "property", "other")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    what: str
    by: str


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    elevator_id: str
    kind: str
    severity: str
    incident_class: str
    state: str
    rule: str | None
    source: str
    opened_at: datetime
    deadline_at: datetime
    warning_at: datetime
    ack_deadline_at: datetime
    updated_at: datetime
    sla: str = "pending"
    drill: bool = False
    # The incident this one is a companion of (a fault raised by the same episode of a
    # trapped car): shown and alerted inside it, never as a card or alarm of its own.
    parent_id: str | None = None
    site: str | None = None
    district: str | None = None
    maintenance_company: str | None = None
    report_deadline_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    dispatched_at: datetime | None = None
    crew_id: str | None = None
    arrived_at: datetime | None = None
    arrival_reported_at: datetime | None = None
    arrival_telemetry_at: datetime | None = None
    released_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    regulator_reported_at: datetime | None = None
    warned_at: datetime | None = None
    breach_alerted_at: datetime | None = None
    ack_alerts: int = 0
    report_alerted_at: datetime | None = None
    next_due_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = field(default=(), compare=False)

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    @property
    def arrival_s(self) -> float | None:
        if self.arrived_at is None:
            return None
        return (self.arrived_at - self.opened_at).total_seconds()

    @property
    def arrival_evidence(self) -> str | None:
        kinds = [
            name
            for name, at in (
                ("reported", self.arrival_reported_at),
                ("telemetry", self.arrival_telemetry_at),
            )
            if at is not None
        ]
        return "+".join(kinds) or None

    def row(self) -> dict[str, Any]:
        """The stored columns (everything but the timeline)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timeline"}


_CLASS_RANK: Final = {"entrapment": 0, "accident": 1}


def main_incident(incidents: Sequence[Incident]) -> Incident | None:
    """The incident a page leads with: one with no parent, an entrapment before an accident
    before a fault, then the newest."""
    return min(
        incidents,
        key=lambda i: (
            i.parent_id is not None,
            _CLASS_RANK.get(i.incident_class, 2),
            -i.opened_at.timestamp(),
        ),
        default=None,
    )


def iso_utc(value: datetime | None) -> str | None:
    """RFC 3339 in UTC, as the contract wants every time (whatever offset came in)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_json(incident: Incident) -> dict[str, Any]:
    """The contract's incident JSON (plus a few added fields, never renamed ones)."""
    i = incident
    return {
        "id": i.id,
        "elevator_id": i.elevator_id,
        "kind": i.kind,
        "severity": i.severity,
        "state": i.state,
        "opened_at": iso_utc(i.opened_at),
        "deadline_at": iso_utc(i.deadline_at),
        "ack_deadline_at": iso_utc(i.ack_deadline_at),
        "acknowledged_at": iso_utc(i.acknowledged_at),
        "dispatched_at": iso_utc(i.dispatched_at),
        "crew_id": i.crew_id,
        "maintenance_company": i.maintenance_company,
        "arrived_at": iso_utc(i.arrived_at),
        "arrival_evidence": i.arrival_evidence,
        "released_at": iso_utc(i.released_at),
        "closed_at": iso_utc(i.closed_at),
        "resolution": i.resolution,
        "arrival_s": i.arrival_s,
        "sla": i.sla,
        "rule": i.rule,
        "source": i.source,
        "timeline": [{"at": iso_utc(t.at), "what": t.what, "by": t.by} for t in i.timeline],
        # additions
        "incident_class": i.incident_class,
        "drill": i.drill,
        "site": i.site,
        "district": i.district,
        "warning_at": iso_utc(i.warning_at),
        "report_deadline_at": iso_utc(i.report_deadline_at),
        "regulator_reported_at": iso_utc(i.regulator_reported_at),
        "acknowledged_by": i.acknowledged_by,
        "parent_id": i.parent_id,
    }

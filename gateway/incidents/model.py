"""The incident as data, and its JSON form (contract §3, "Incident JSON").

The dataclasses are the store's records (`gateway.store.records`), named here too so the
incident code reads them from its own package."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from gateway.store.records import SOURCES, Incident, TimelineEntry

__all__ = [
    "RESOLUTIONS",
    "SOURCES",
    "STATES",
    "Incident",
    "TimelineEntry",
    "iso_utc",
    "main_incident",
    "to_json",
]

STATES: Final = ("open", "acknowledged", "dispatched", "arrived", "released", "closed")
RESOLUTIONS: Final = ("rescued", "false_alarm", "self_recovered", "other")


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
        "clock_start": i.clock_start,
        "people_trapped": i.people_trapped,
        "rescue_level": i.rescue_level,
    }

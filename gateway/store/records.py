"""The value types the store reads and writes: incidents with their timelines, and
the episodes and notices the compliance lists read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

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
    clock_start: str = "reported"  # or "dispatched": the district's rule (both times kept)
    people_trapped: int | None = None
    rescue_level: int | None = None  # reached: 1 maintenance unit, 2 rescue station, 3 fire
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


@dataclass(frozen=True, slots=True)
class Notice:
    """A public outage notice: the reason and the expected return to service."""

    elevator_id: str
    posted_at: datetime
    reason: str
    expected_return_at: datetime | None = None


# What the gateway records of each elevator from the stream (gateway/episodes.py).
EPISODE_KINDS: Final = (
    "maintenance", "inspection", "out_of_service", "offline", "power_loss", "alarm_test"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Episode:
    """A span of one elevator in one state, or a moment (`alarm_test`: started = ended).
    `ended_at` is None while it lasts;
    `last_seen_at` is the newest frame known in it (to within a minute while it is open),
    where a session that fell silent ends."""

    elevator_id: str
    kind: str
    started_at: datetime
    ended_at: datetime | None
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class MaintenanceRecord:
    """A maintenance visit as the maintenance unit reports it."""

    elevator_id: str
    at: datetime  # when the visit began
    company: str
    technician: str
    items: tuple[str, ...]  # what was done (checklist items)
    duration_min: int
    note: str | None = None

"""Data quality: how far the figures can be trusted (evidence, silence, sources)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final

from gateway.reports._base import (
    HOUR,
    GroupBy,
    Registry,
    chronological,
    counted,
    group_key,
    grouped,
    pct,
)
from gateway.reports.rescue import entrapments
from gateway.store.records import SOURCES, Episode, Incident

LONG_OFFLINE: Final = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ArrivalEvidence:
    group: str | None
    arrived: int
    telemetry_backed: int
    reported_only: int
    telemetry_only: int
    telemetry_backed_pct: float | None


@dataclass(frozen=True, slots=True)
class OfflineStretch:
    elevator_id: str
    offline_at: datetime
    online_at: datetime | None  # None: still offline
    hours: float


@dataclass(frozen=True, slots=True)
class SourceFigures:
    source: str  # how incidents were first reported: telemetry, phone, citizen, ...
    incidents: int
    entrapments: int
    entrapments_pct: float | None  # of all counted entrapments


@dataclass(frozen=True, slots=True)
class CitizenFalseAlarms:
    elevator_id: str
    false_alarms: int  # citizen-started incidents closed as `false_alarm` in the period
    entrapments: int  # of them, `trapped` reports (which started the arrival clock)
    last_at: datetime
    incident_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WithoutTelemetry:
    elevator_id: str
    maintenance_company: str | None
    district: str | None


def arrival_evidence(
    incidents: Iterable[Incident], group_by: GroupBy, registry: Registry = ()
) -> list[ArrivalEvidence]:
    """Counted arrivals by evidence: telemetry-backed (with or without a crew report),
    reported only, telemetry only."""
    rows = []
    arrived = (i for i in filter(counted, incidents) if i.arrived_at is not None)
    for group, members in grouped(arrived, group_key(group_by, registry)):
        backed = sum(1 for i in members if i.arrival_telemetry_at is not None)
        reported_only = sum(1 for i in members if i.arrival_evidence == "reported")
        telemetry_only = sum(1 for i in members if i.arrival_evidence == "telemetry")
        rows.append(
            ArrivalEvidence(
                group,
                len(members),
                backed,
                reported_only,
                telemetry_only,
                pct(backed, len(members)),
            )
        )
    return rows


def offline_stretches(
    episodes: Iterable[Episode],
    since: datetime,
    as_of: datetime,
    minimum: timedelta = LONG_OFFLINE,
) -> list[OfflineStretch]:
    """`offline` episodes (the device's `online` 0 to its next 1, or `as_of`) of at least
    `minimum`, that reach into [since, as_of]."""
    rows = []
    for e in sorted(episodes, key=lambda e: (e.elevator_id, e.started_at)):
        if e.kind != "offline" or e.started_at > as_of:
            continue
        back = e.ended_at if e.ended_at is not None and e.ended_at <= as_of else None
        end = back or as_of
        if end - e.started_at >= minimum and end >= since:
            rows.append(
                OfflineStretch(
                    e.elevator_id, e.started_at, back, round((end - e.started_at) / HOUR, 2)
                )
            )
    return rows


def by_source(incidents: Iterable[Incident]) -> list[SourceFigures]:
    """Counted incidents and entrapments by how they were first reported (`source`), one
    row per source of the contract, in its order."""
    real = list(filter(counted, incidents))
    trapped = entrapments(real)
    rows = []
    for source in SOURCES:
        n = sum(1 for i in trapped if i.source == source)
        rows.append(
            SourceFigures(
                source, sum(1 for i in real if i.source == source), n, pct(n, len(trapped))
            )
        )
    return rows


def citizen_false_alarms(incidents: Iterable[Incident]) -> list[CitizenFalseAlarms]:
    """Per elevator, the incidents citizens started (public page) that were closed as
    `false_alarm`, most first: where the page is abused, or its reports misread. Drills
    left out."""
    false = sorted(
        (
            i
            for i in incidents
            if i.source == "citizen" and i.resolution == "false_alarm" and not i.drill
        ),
        key=lambda i: (i.elevator_id, chronological(i)),
    )
    rows = [
        CitizenFalseAlarms(
            elevator_id,
            len(members),
            sum(1 for i in members if i.kind == "entrapment"),
            members[-1].opened_at,
            tuple(i.id for i in members),
        )
        for elevator_id, group in groupby(false, key=lambda i: i.elevator_id)
        for members in [list(group)]
    ]
    return sorted(rows, key=lambda r: (-r.false_alarms, r.elevator_id))


def without_telemetry(registry: Registry, heard: Collection[str]) -> list[WithoutTelemetry]:
    """Registered elevators not `heard` from (no frame of any kind within the telemetry
    look-back: reported by phone or citizens only)."""
    return [
        WithoutTelemetry(r["elevator_id"], r.get("maintenance_company"), r.get("district"))
        for r in sorted(registry, key=lambda r: r["elevator_id"])
        if r["elevator_id"] not in heard
    ]

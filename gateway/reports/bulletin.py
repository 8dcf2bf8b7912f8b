"""The regulator's bulletin: the headline figures a city publishes each month (entrapments,
per 100 elevators per month, 3-minute response rate, 30-minute arrival rate, arrival and
on-site rescue times, breaches), each beside the previous period's, a ranking of maintenance
companies and districts, and faults apart. Pure over stored incidents and the registry.

Rescue figures count the classes that run the arrival clock (entrapment and accident);
faults have no arrival limit and are counted in a table of their own.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from gateway.incidents.sla import ARRIVAL_CLASSES
from gateway.reports._base import (
    GroupBy,
    Registry,
    counted,
    group_key,
    p90,
    pct,
    registry_group,
    responded_at,
)
from gateway.reports.rescue import HistogramBin, arrival_histogram
from gateway.store.records import Incident

# An average month (365.25 / 12 days): the "per 100 elevators per month" divisor.
MONTH: Final = timedelta(days=365.25 / 12)


@dataclass(frozen=True, slots=True)
class Figures:
    """The headline figures of one period."""

    entrapments: int
    accidents: int
    elevators: int  # registered, plus unregistered ones with a rescue in the period
    per_100_per_month: float | None  # entrapments per 100 elevators per month
    responses: int  # rescues whose 3 minutes have run out, or that were answered
    responded_in_time: int
    response_pct: float | None
    arrival_outcomes: int  # rescues whose arrival clock has an outcome (met or breached)
    arrived_in_time: int
    arrival_pct: float | None
    arrival_avg_s: float | None
    arrival_p90_s: float | None
    rescue_avg_s: float | None  # on site: arrival to release
    breaches: int
    faults: int

    @property
    def rescues(self) -> int:
        return self.entrapments + self.accidents


@dataclass(frozen=True, slots=True)
class Ranked:
    """One maintenance company's or district's figures in the ranking."""

    group: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class FaultRow:
    kind: str
    incidents: int
    elevators: int
    open_at_end: int  # not closed at the report's `as_of`
    previous: int  # in the previous period


def is_rescue(incident: Incident) -> bool:
    return counted(incident) and incident.incident_class in ARRIVAL_CLASSES


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def figures(
    incidents: Iterable[Incident],
    elevators: int,
    since: datetime,
    until: datetime,
    as_of: datetime,
) -> Figures:
    """Headline figures of the incidents opened in [since, until) (the caller filters)."""
    incidents = list(incidents)
    rescues = [i for i in incidents if is_rescue(i)]
    entrapments = sum(1 for i in rescues if i.incident_class == "entrapment")
    answered = [(i, responded_at(i)) for i in rescues]
    responses = [(i, at) for i, at in answered if at is not None or i.ack_deadline_at <= as_of]
    in_time = sum(1 for i, at in responses if at is not None and at < i.ack_deadline_at)
    outcomes = [i for i in rescues if i.sla in ("met", "breached")]
    met = sum(1 for i in outcomes if i.sla == "met")
    arrivals = [i.arrival_s for i in rescues if i.arrival_s is not None]
    on_site = [
        (i.released_at - i.arrived_at).total_seconds()
        for i in rescues
        if i.released_at is not None and i.arrived_at is not None and i.released_at >= i.arrived_at
    ]
    months = (until - since) / MONTH
    per_100 = 100.0 * entrapments / elevators / months if elevators and months else None
    return Figures(
        entrapments=entrapments,
        accidents=len(rescues) - entrapments,
        elevators=elevators,
        per_100_per_month=round(per_100, 3) if per_100 is not None else None,
        responses=len(responses),
        responded_in_time=in_time,
        response_pct=pct(in_time, len(responses)),
        arrival_outcomes=len(outcomes),
        arrived_in_time=met,
        arrival_pct=pct(met, len(outcomes)),
        arrival_avg_s=_mean(arrivals),
        arrival_p90_s=p90(arrivals),
        rescue_avg_s=_mean(on_site),
        breaches=sum(1 for i in rescues if i.sla == "breached"),
        faults=sum(1 for i in incidents if counted(i) and i.incident_class == "fault"),
    )


def _elevators(registry: Registry, rescues: Iterable[Incident]) -> set[str]:
    return {r["elevator_id"] for r in registry} | {i.elevator_id for i in rescues}


def headline(
    incidents: Sequence[Incident],
    registry: Registry,
    since: datetime,
    until: datetime,
    as_of: datetime,
) -> Figures:
    period = [i for i in incidents if since <= i.opened_at < until]
    count = len(_elevators(registry, filter(is_rescue, period)))
    return figures(period, count, since, until, as_of)


def ranking(
    incidents: Sequence[Incident],
    registry: Registry,
    field: GroupBy,
    since: datetime,
    until: datetime,
    as_of: datetime,
) -> list[Ranked]:
    """Every group (registered ones without incidents too), worst first: most breaches,
    then the lowest 30-minute arrival rate, the lowest 3-minute response rate, the longest
    average arrival, then by name."""
    key = group_key(field, registry)
    period = [i for i in incidents if since <= i.opened_at < until]
    members: dict[str, set[str]] = {}
    for record in registry:
        members.setdefault(registry_group(record, field), set()).add(record["elevator_id"])
    grouped: dict[str, list[Incident]] = {}
    for i in period:
        label = key(i)
        grouped.setdefault(label, []).append(i)
        if is_rescue(i):
            members.setdefault(label, set()).add(i.elevator_id)
    rows = [
        Ranked(
            label, figures(grouped.get(label, []), len(members.get(label, ())), since, until, as_of)
        )
        for label in members.keys() | grouped.keys()
    ]

    def worst_first(row: Ranked) -> tuple[Any, ...]:
        f = row.figures
        return (
            -f.breaches,
            100.0 if f.arrival_pct is None else f.arrival_pct,
            100.0 if f.response_pct is None else f.response_pct,
            -(f.arrival_avg_s or 0.0),
            -f.rescues,
            row.group,
        )

    return sorted(rows, key=worst_first)


def faults(
    incidents: Sequence[Incident],
    since: datetime,
    until: datetime,
    previous_since: datetime,
    as_of: datetime,
) -> list[FaultRow]:
    """Counted fault-class incidents by kind, most first, with the previous period's count."""

    def of_faults(start: datetime, end: datetime) -> list[Incident]:
        return [
            i
            for i in incidents
            if start <= i.opened_at < end and counted(i) and i.incident_class == "fault"
        ]

    now, before = of_faults(since, until), of_faults(previous_since, since)
    kinds = {i.kind for i in now} | {i.kind for i in before}
    rows = []
    for kind in kinds:
        mine = [i for i in now if i.kind == kind]
        rows.append(
            FaultRow(
                kind,
                len(mine),
                len({i.elevator_id for i in mine}),
                sum(1 for i in mine if i.closed_at is None or i.closed_at > as_of),
                sum(1 for i in before if i.kind == kind),
            )
        )
    return sorted(rows, key=lambda r: (-r.incidents, -r.previous, r.kind))


@dataclass(frozen=True, slots=True)
class Bulletin:
    """The whole bulletin; `previous_since` starts the previous period, of equal length."""

    since: datetime
    until: datetime
    as_of: datetime
    previous_since: datetime
    current: Figures
    previous: Figures
    companies: list[Ranked]
    districts: list[Ranked]
    faults: list[FaultRow]
    histogram: list[HistogramBin]


def bulletin(
    incidents: Sequence[Incident],
    registry: Registry,
    since: datetime,
    until: datetime,
    as_of: datetime,
) -> Bulletin:
    """The period [since, until) and the one of the same length before it. The compliance
    lists and breaches come from `reports.build`, over the same inputs."""
    previous_since = since - (until - since)
    period = [i for i in incidents if since <= i.opened_at < until]
    return Bulletin(
        since=since,
        until=until,
        as_of=as_of,
        previous_since=previous_since,
        current=headline(incidents, registry, since, until, as_of),
        previous=headline(incidents, registry, previous_since, since, as_of),
        companies=ranking(incidents, registry, "maintenance_company", since, until, as_of),
        districts=ranking(incidents, registry, "district", since, until, as_of),
        faults=faults(incidents, since, until, previous_since, as_of),
        histogram=arrival_histogram(filter(is_rescue, period)),
    )

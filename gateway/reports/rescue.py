"""Rescue figures: response times, arrivals, entrapments and their causes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final
from zoneinfo import ZoneInfo

from gateway.reports._base import (
    YEAR,
    GroupBy,
    Registry,
    by_id,
    chronological,
    counted,
    first_cluster,
    group_key,
    grouped,
    median,
    p90,
    pct,
    registry_group,
    responded_at,
)
from gateway.store.records import Incident

REPEAT_WINDOW: Final = timedelta(days=90)
REPEAT_COUNT: Final = 3
HISTOGRAM_BIN_S: Final = 300
HISTOGRAM_LAST_S: Final = 3600


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """The contract's response-time object (first eleven fields), plus additions."""

    group: str | None
    incidents: int
    arrived: int
    within_limit: int
    within_limit_pct: float | None
    arrival_median_s: float | None
    arrival_p90_s: float | None
    arrival_max_s: float | None
    breaches: int
    acknowledged_within_limit_pct: float | None
    release_median_s: float | None
    acknowledged_within_limit: int
    breach_ids: tuple[str, ...]
    citizen_started: int  # of `incidents`, first reported by a citizen on the public page
    people_trapped: int  # over the incidents that recorded it (96333 practice)
    # Incidents whose rescue reached level 1 (maintenance unit), 2 (rescue station), 3 (fire)
    rescue_level_1: int
    rescue_level_2: int
    rescue_level_3: int


@dataclass(frozen=True, slots=True)
class HistogramBin:
    from_s: int
    to_s: int | None  # None: the open last bin
    arrivals: int


@dataclass(frozen=True, slots=True)
class EntrapmentRate:
    group: str | None
    elevators: int
    elevator_years: float
    entrapments: int
    per_elevator_year: float | None


@dataclass(frozen=True, slots=True)
class RepeatedEntrapments:
    elevator_id: str
    entrapments: int  # in the first window that qualifies
    first_at: datetime
    last_at: datetime
    incident_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cause:
    by: str  # "resolution" or "kind"
    value: str
    incidents: int
    pct: float | None


@dataclass(frozen=True, slots=True)
class Breach:
    incident_id: str
    elevator_id: str
    maintenance_company: str
    district: str
    opened_at: datetime
    deadline_at: datetime
    arrived_at: datetime | None
    arrival_s: float | None
    source: str  # how it was first reported (`citizen`: the public page)


def response_times(
    incidents: Iterable[Incident], group_by: GroupBy, registry: Registry = ()
) -> list[GroupFigures]:
    """The contract's `GET /api/metrics/response-times`: one object per group, sorted by group."""
    return [
        _figures(group, members)
        for group, members in grouped(filter(counted, incidents), group_key(group_by, registry))
    ]


def monthly_trend(incidents: Iterable[Incident], zone: ZoneInfo) -> list[GroupFigures]:
    """Response-time figures per local calendar month of `opened_at` (`YYYY-MM`)."""
    return [
        _figures(month, members)
        for month, members in grouped(
            filter(counted, incidents), lambda i: i.opened_at.astimezone(zone).strftime("%Y-%m")
        )
    ]


def _figures(group: str | None, incidents: list[Incident]) -> GroupFigures:
    arrivals = [i.arrival_s for i in incidents if i.arrival_s is not None]
    with_outcome = [i for i in incidents if i.sla in ("met", "breached")]
    within = sum(1 for i in with_outcome if i.sla == "met")
    acked_in_time = sum(
        1
        for i in incidents
        if (answered := responded_at(i)) is not None and answered < i.ack_deadline_at
    )
    releases = [
        (i.released_at - i.arrived_at).total_seconds()
        for i in incidents
        if i.released_at is not None and i.arrived_at is not None and i.released_at >= i.arrived_at
    ]
    breached = [i.id for i in incidents if i.sla == "breached"]
    levels = [i.rescue_level for i in incidents]
    return GroupFigures(
        group=group,
        incidents=len(incidents),
        arrived=len(arrivals),
        within_limit=within,
        within_limit_pct=pct(within, len(with_outcome)),
        arrival_median_s=median(arrivals),
        arrival_p90_s=p90(arrivals),
        arrival_max_s=max(arrivals, default=None),
        breaches=len(breached),
        acknowledged_within_limit_pct=pct(acked_in_time, len(incidents)),
        release_median_s=median(releases),
        acknowledged_within_limit=acked_in_time,
        breach_ids=tuple(breached),
        citizen_started=sum(1 for i in incidents if i.source == "citizen"),
        people_trapped=sum(i.people_trapped or 0 for i in incidents),
        rescue_level_1=levels.count(1),
        rescue_level_2=levels.count(2),
        rescue_level_3=levels.count(3),
    )


def arrival_histogram(
    incidents: Iterable[Incident], bin_s: int = HISTOGRAM_BIN_S, last_s: int = HISTOGRAM_LAST_S
) -> list[HistogramBin]:
    """Counted arrivals in bins [from_s, to_s) of `bin_s`, and one open bin from `last_s`."""
    counts = [0] * (last_s // bin_s + 1)
    for i in filter(counted, incidents):
        if i.arrival_s is not None:
            counts[min(int(i.arrival_s // bin_s), len(counts) - 1)] += 1
    return [
        HistogramBin(n * bin_s, (n + 1) * bin_s if n < len(counts) - 1 else None, c)
        for n, c in enumerate(counts)
    ]


def breaches(incidents: Iterable[Incident], registry: Registry = ()) -> list[Breach]:
    """Every counted incident whose arrival breached its limit, oldest first; company and
    district as `group_key` names them."""
    company, district = group_key("maintenance_company", registry), group_key("district", registry)
    return [
        Breach(
            i.id,
            i.elevator_id,
            company(i),
            district(i),
            i.opened_at,
            i.deadline_at,
            i.arrived_at,
            i.arrival_s,
            i.source,
        )
        for i in sorted(filter(counted, incidents), key=chronological)
        if i.sla == "breached"
    ]


# -- entrapments and causes ----------------------------------------------------------------
def entrapments(incidents: Iterable[Incident]) -> list[Incident]:
    return [i for i in incidents if counted(i) and i.incident_class == "entrapment"]


def entrapment_rate(
    incidents: Iterable[Incident],
    registry: Registry,
    group_by: GroupBy,
    since: datetime,
    until: datetime,
) -> list[EntrapmentRate]:
    """Entrapments per elevator-year: elevator-years = elevators × period / 365 days, the
    elevators being the registered ones plus any unregistered one with an incident."""
    key = group_key(group_by, registry)
    members: dict[str, set[str]] = {}
    for record in registry:
        members.setdefault(registry_group(record, group_by), set()).add(record["elevator_id"])
    trapped = entrapments(incidents)
    registered = by_id(registry)
    for i in trapped:
        if i.elevator_id not in registered:
            members.setdefault(key(i), set()).add(i.elevator_id)
    counts: dict[str, int] = {}
    for i in trapped:
        counts[key(i)] = counts.get(key(i), 0) + 1
    years = (until - since) / YEAR
    rows = []
    for group in sorted(members.keys() | counts.keys(), key=str):
        elevator_years = round(len(members.get(group, ())) * years, 4)
        n = counts.get(group, 0)
        rate = round(n / elevator_years, 4) if elevator_years else None
        rows.append(EntrapmentRate(group, len(members.get(group, ())), elevator_years, n, rate))
    return rows


def repeated_entrapments(
    incidents: Iterable[Incident],
    count: int = REPEAT_COUNT,
    window: timedelta = REPEAT_WINDOW,
) -> list[RepeatedEntrapments]:
    """Elevators with >= `count` counted entrapments opened within `window` of each other."""
    rows = []
    trapped = sorted(entrapments(incidents), key=lambda i: i.elevator_id)
    for elevator_id, group in groupby(trapped, key=lambda i: i.elevator_id):
        cluster = first_cluster([(i.opened_at, i.id) for i in group], count, window)
        if cluster:
            rows.append(
                RepeatedEntrapments(
                    elevator_id,
                    len(cluster),
                    cluster[0][0],
                    cluster[-1][0],
                    tuple(e[1] for e in cluster),
                )
            )
    return rows


def causes(incidents: Iterable[Incident]) -> list[Cause]:
    """Incidents by resolution and by kind (fault code). Drills are left out; false alarms
    stay in, as a resolution, since they are a cause regulators ask about."""
    real = [i for i in incidents if not i.drill]
    rows = []
    for by, value_of in (
        ("resolution", lambda i: i.resolution or "unresolved"),
        ("kind", lambda i: i.kind),
    ):
        tally: dict[str, int] = {}
        for i in real:
            tally[value_of(i)] = tally.get(value_of(i), 0) + 1
        rows += [
            Cause(by, value, n, pct(n, len(real)))
            for value, n in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
    return rows

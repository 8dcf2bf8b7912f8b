"""Regulator figures and compliance lists, as pure functions over stored incidents, the
registry, telemetry samples and outage notices, with `as_of` passed in (never read here).

Definitions (also in the README):
- counted: every incident except drills and those closed as `false_alarm`; every figure and
  list below uses counted incidents unless it says otherwise;
- arrived within the limit: `arrived_at` strictly before `deadline_at` (the incident's own,
  so per-district limits apply); `within_limit_pct` is over counted incidents whose arrival
  clock has an outcome (`sla` met or breached);
- acknowledged within the limit: `acknowledged_at` strictly before `ack_deadline_at`, over
  all counted incidents;
- median: the middle value, or the mean of the two middle values; p90: nearest rank
  (the value at position ceil(0.9 n) in ascending order);
- release time: arrival to release, for incidents with both;
- periods: `since` inclusive, `until` exclusive, by `opened_at`; a bare date is local
  midnight in the configured zone; monthly buckets are local calendar months;
- "within N days" spans are inclusive: two events exactly N×24 h apart are within N days;
  12 months = 365 days, 6 months = 183 days;
- calendar rules (15-day maintenance, 30-day inspection) count local calendar days.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.incidents.model import SOURCES, Incident

GroupBy = Literal["maintenance_company", "district", "use_unit", "elevator_id"]
Registry = Sequence[Mapping[str, Any]]  # registry records, as `Store.all_elevators()` gives

REPEAT_WINDOW: Final = timedelta(days=90)
REPEAT_COUNT: Final = 3
BLACKLIST_WINDOW: Final = timedelta(days=365)
BLACKLIST_COUNT: Final = 2
DRILL_INTERVAL: Final = timedelta(days=183)
MAINTENANCE_INTERVAL_DAYS: Final = 15
INSPECTION_NOTICE_DAYS: Final = 30
OUTAGE_NOTICE_AFTER: Final = timedelta(hours=24)
LONG_OFFLINE: Final = timedelta(hours=24)
# A maintenance visit seen in telemetry: a `maintenance`/`inspection` run at least this long;
# a silence longer than SESSION_GAP ends the run at its last frame (we cannot see past it).
SESSION_MIN: Final = timedelta(minutes=10)
SESSION_GAP: Final = timedelta(minutes=5)
SESSION_MODES: Final = ("maintenance", "inspection")
# Telemetry looked back over for maintenance sessions and out-of-service runs.
TELEMETRY_LOOKBACK: Final = timedelta(days=31)
HISTOGRAM_BIN_S: Final = 300
HISTOGRAM_LAST_S: Final = 3600
_YEAR: Final = timedelta(days=365)
_HOUR: Final = timedelta(hours=1)
# Faults that leave the car stopped until someone repairs it (domain.md, "Outage notice").
STOPPING_KINDS: Final = frozenset(
    {
        "STOP_OUTSIDE_DOOR_ZONE",
        "SAFETY_CIRCUIT_OPEN",
        "DOOR_LOCK_FAULT",
        "POWER_FAILURE",
        "CONTROLLER_FAULT",
    }
)


# -- inputs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModeSample:
    """One status frame's `mode`, at device time."""

    elevator_id: str
    at: datetime
    mode: str


@dataclass(frozen=True, slots=True)
class OnlineSample:
    elevator_id: str
    at: datetime
    online: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """A public outage notice: the reason and the expected return to service."""

    elevator_id: str
    posted_at: datetime
    reason: str
    expected_return_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    incidents: Sequence[Incident]
    registry: Registry
    modes: Sequence[ModeSample] = ()
    online: Sequence[OnlineSample] = ()
    notices: Sequence[Notice] = ()


class Source(Protocol):
    """Where `gather` reads from (the `Store`)."""

    def list_incidents(
        self, *, since: datetime | None, until: datetime | None, limit: int
    ) -> list[Incident]: ...

    def all_elevators(self) -> list[dict[str, Any]]: ...

    def status_modes(self, since: datetime, until: datetime) -> list[ModeSample]: ...

    def online_changes(self, until: datetime) -> list[OnlineSample]: ...

    def outage_notices(self) -> list[Notice]: ...


# -- rows ----------------------------------------------------------------------------------
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
    maintenance_company: str | None
    district: str | None
    opened_at: datetime
    deadline_at: datetime
    arrived_at: datetime | None
    arrival_s: float | None
    source: str  # how it was first reported (`citizen`: the public page)


@dataclass(frozen=True, slots=True)
class MaintenanceSession:
    elevator_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class MaintenanceOverdue:
    elevator_id: str
    maintenance_company: str | None
    registry_last_maintenance: date | None
    telemetry_last_session_at: datetime | None
    last_visit: date | None
    days_since: int | None


@dataclass(frozen=True, slots=True)
class InspectionDue:
    elevator_id: str
    maintenance_company: str | None
    use_unit: str | None
    inspection_due: date | None
    days_left: int | None
    status: str  # "overdue", "due" or "unknown" (no date in the registry)


@dataclass(frozen=True, slots=True)
class Outage:
    elevator_id: str
    reason: str  # "out_of_service", "offline" or "fault:<code>"
    since: datetime


@dataclass(frozen=True, slots=True)
class OutageWithoutNotice:
    elevator_id: str
    reason: str
    since: datetime
    hours: float


@dataclass(frozen=True, slots=True)
class AccidentUnreported:
    incident_id: str
    elevator_id: str
    kind: str
    opened_at: datetime
    report_deadline_at: datetime
    regulator_reported_at: datetime | None


@dataclass(frozen=True, slots=True)
class BlacklistCandidate:
    maintenance_company: str
    breaches: int  # in the first window that qualifies
    first_breach_at: datetime
    last_breach_at: datetime
    incident_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrillMissing:
    maintenance_company: str
    last_drill_at: datetime | None
    days_since: int | None


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


# -- helpers -------------------------------------------------------------------------------
def counted(incident: Incident) -> bool:
    return not incident.drill and incident.resolution != "false_alarm"


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _by_id(registry: Registry) -> dict[str, Mapping[str, Any]]:
    return {r["elevator_id"]: r for r in registry}


def _group_key(group_by: GroupBy, registry: Registry) -> Callable[[Incident], str | None]:
    """The incident's own value (as it was when opened), else the registry's current one;
    the use unit is only in the registry."""
    records = _by_id(registry)

    def key(incident: Incident) -> str | None:
        value = None if group_by == "use_unit" else getattr(incident, group_by)
        if value is None:
            value = records.get(incident.elevator_id, {}).get(group_by)
        return value

    return key


def _chronological(incident: Incident) -> tuple[datetime, str]:
    """A stable order whatever order the store returned: opening time, then id."""
    return incident.opened_at, incident.id


def _grouped(
    incidents: Iterable[Incident], key: Callable[[Incident], str | None]
) -> list[tuple[str | None, list[Incident]]]:
    groups: dict[str | None, list[Incident]] = {}
    for incident in sorted(incidents, key=_chronological):
        groups.setdefault(key(incident), []).append(incident)
    return sorted(groups.items(), key=lambda kv: str(kv[0]))


def _first_cluster(
    events: Sequence[tuple[datetime, str]],
    count: int,
    span: timedelta,
    ending_from: datetime | None = None,
) -> list[tuple[datetime, str]] | None:
    """The earliest run of >= `count` events within `span` (inclusive) whose `count`-th event
    is at or after `ending_from`, with every event of its window; None if there is none."""
    ordered = sorted(events)
    for last in range(count - 1, len(ordered)):
        first_at, last_at = ordered[last - count + 1][0], ordered[last][0]
        if last_at - first_at <= span and (ending_from is None or last_at >= ending_from):
            start = last - count + 1
            return [e for e in ordered[start:] if e[0] - first_at <= span]
    return None


def local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


class PeriodError(ValueError):
    """A bad period or zone; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise PeriodError("timezone", f"unknown time zone {name!r}") from None


def _bound(field: str, value: str, zone: ZoneInfo) -> datetime:
    """`YYYY-MM-DD` is local midnight, a time without offset is local time, one with an
    offset is taken as given; the result is UTC."""
    try:
        if len(value) == 10:
            at = datetime.combine(date.fromisoformat(value), time(), zone)
        else:
            at = datetime.fromisoformat(value)
            at = at if at.tzinfo is not None else at.replace(tzinfo=zone)
    except ValueError:
        raise PeriodError(field, "expected YYYY-MM-DD or an ISO 8601 time") from None
    return at.astimezone(UTC)


def resolve_period(
    since: str | None, until: str | None, zone: ZoneInfo, now: datetime
) -> tuple[datetime, datetime, datetime]:
    """(since, until, as_of): `until` defaults to `now` and `since` to 365 days before it;
    `as_of`, the moment the compliance lists describe, is the earlier of `until` and `now`."""
    end = _bound("until", until, zone) if until else now
    start = _bound("since", since, zone) if since else end - _YEAR
    if start >= end:
        raise PeriodError("since", "must be before until")
    return start, end, min(end, now)


# -- response times ------------------------------------------------------------------------
def response_times(
    incidents: Iterable[Incident], group_by: GroupBy, registry: Registry = ()
) -> list[GroupFigures]:
    """The contract's `GET /api/metrics/response-times`: one object per group, sorted by group."""
    return [
        _figures(group, members)
        for group, members in _grouped(filter(counted, incidents), _group_key(group_by, registry))
    ]


def monthly_trend(incidents: Iterable[Incident], zone: ZoneInfo) -> list[GroupFigures]:
    """Response-time figures per local calendar month of `opened_at` (`YYYY-MM`)."""
    return [
        _figures(month, members)
        for month, members in _grouped(
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
        if i.acknowledged_at is not None and i.acknowledged_at < i.ack_deadline_at
    )
    releases = [
        (i.released_at - i.arrived_at).total_seconds()
        for i in incidents
        if i.released_at is not None and i.arrived_at is not None and i.released_at >= i.arrived_at
    ]
    breached = [i.id for i in incidents if i.sla == "breached"]
    return GroupFigures(
        group=group,
        incidents=len(incidents),
        arrived=len(arrivals),
        within_limit=within,
        within_limit_pct=_pct(within, len(with_outcome)),
        arrival_median_s=_median(arrivals),
        arrival_p90_s=p90(arrivals),
        arrival_max_s=max(arrivals, default=None),
        breaches=len(breached),
        acknowledged_within_limit_pct=_pct(acked_in_time, len(incidents)),
        release_median_s=_median(releases),
        acknowledged_within_limit=acked_in_time,
        breach_ids=tuple(breached),
        citizen_started=sum(1 for i in incidents if i.source == "citizen"),
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


def breaches(incidents: Iterable[Incident]) -> list[Breach]:
    """Every counted incident whose arrival breached its limit, oldest first."""
    return [
        Breach(
            i.id,
            i.elevator_id,
            i.maintenance_company,
            i.district,
            i.opened_at,
            i.deadline_at,
            i.arrived_at,
            i.arrival_s,
            i.source,
        )
        for i in sorted(filter(counted, incidents), key=_chronological)
        if i.sla == "breached"
    ]


# -- entrapments and causes ----------------------------------------------------------------
def _entrapments(incidents: Iterable[Incident]) -> list[Incident]:
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
    key = _group_key(group_by, registry)
    members: dict[str | None, set[str]] = {}
    for record in registry:
        members.setdefault(record.get(group_by), set()).add(record["elevator_id"])
    trapped = _entrapments(incidents)
    registered = _by_id(registry)
    for i in trapped:
        if i.elevator_id not in registered:
            members.setdefault(key(i), set()).add(i.elevator_id)
    counts: dict[str | None, int] = {}
    for i in trapped:
        counts[key(i)] = counts.get(key(i), 0) + 1
    years = (until - since) / _YEAR
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
    trapped = sorted(_entrapments(incidents), key=lambda i: i.elevator_id)
    for elevator_id, group in groupby(trapped, key=lambda i: i.elevator_id):
        cluster = _first_cluster([(i.opened_at, i.id) for i in group], count, window)
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
            Cause(by, value, n, _pct(n, len(real)))
            for value, n in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
    return rows


# -- compliance ----------------------------------------------------------------------------
def maintenance_sessions(
    samples: Iterable[ModeSample], minimum: timedelta = SESSION_MIN, gap: timedelta = SESSION_GAP
) -> list[MaintenanceSession]:
    """Runs of `maintenance`/`inspection` frames lasting >= `minimum`. A run ends at the
    first frame in another mode, or at its own last frame when the device then falls silent
    for more than `gap`."""
    sessions = []
    ordered = sorted(samples, key=lambda s: (s.elevator_id, s.at))
    for elevator_id, group in groupby(ordered, key=lambda s: s.elevator_id):
        start: datetime | None = None
        last = datetime.min
        for s in group:
            on = s.mode in SESSION_MODES
            if start is not None and (not on or s.at - last > gap):
                end = s.at if s.at - last <= gap else last
                if end - start >= minimum:
                    sessions.append(MaintenanceSession(elevator_id, start, end))
                start = None
            if on:
                start = start or s.at
                last = s.at
        if start is not None and last - start >= minimum:
            sessions.append(MaintenanceSession(elevator_id, start, last))
    return sessions


def maintenance_overdue(
    registry: Registry,
    sessions: Iterable[MaintenanceSession],
    as_of: datetime,
    zone: ZoneInfo,
    interval_days: int = MAINTENANCE_INTERVAL_DAYS,
) -> list[MaintenanceOverdue]:
    """Elevators whose last visit (the later of the registry's `last_maintenance` and the
    local date of the last telemetry session) is more than `interval_days` local calendar
    days before `as_of`, or that have none. Exactly `interval_days` is on time."""
    today = local_date(as_of, zone)
    last_session: dict[str, datetime] = {}
    for s in sessions:
        if s.end <= as_of and s.start > last_session.get(s.elevator_id, s.start - _HOUR):
            last_session[s.elevator_id] = s.start
    records = _by_id(registry)
    rows = []
    for elevator_id in sorted(records.keys() | last_session.keys()):
        record = records.get(elevator_id, {})
        registered: date | None = record.get("last_maintenance")
        seen = last_session.get(elevator_id)
        visits = [d for d in (registered, seen and local_date(seen, zone)) if d is not None]
        last_visit = max(visits, default=None)
        days = (today - last_visit).days if last_visit is not None else None
        if days is None or days > interval_days:
            rows.append(
                MaintenanceOverdue(
                    elevator_id,
                    record.get("maintenance_company"),
                    registered,
                    seen,
                    last_visit,
                    days,
                )
            )
    return rows


def inspections_due(
    registry: Registry, as_of: datetime, zone: ZoneInfo, within_days: int = INSPECTION_NOTICE_DAYS
) -> list[InspectionDue]:
    """Elevators whose `inspection_due` is at most `within_days` local days away (exactly
    `within_days` included), past (`overdue`), or unknown."""
    today = local_date(as_of, zone)
    rows = []
    for r in sorted(registry, key=lambda r: r["elevator_id"]):
        due: date | None = r.get("inspection_due")
        days = (due - today).days if due is not None else None
        if days is None or days <= within_days:
            status = "unknown" if days is None else "overdue" if days < 0 else "due"
            rows.append(
                InspectionDue(
                    r["elevator_id"],
                    r.get("maintenance_company"),
                    r.get("use_unit"),
                    due,
                    days,
                    status,
                )
            )
    return rows


def _trailing_run_start(samples: Sequence[Any], holds: Callable[[Any], bool]) -> datetime | None:
    """When the run of samples for which `holds` is true, ending at the newest, began."""
    start = None
    for s in reversed(samples):
        if not holds(s):
            break
        start = s.at
    return start


def current_outages(
    modes: Iterable[ModeSample],
    online: Iterable[OnlineSample],
    incidents: Iterable[Incident],
    as_of: datetime,
) -> list[Outage]:
    """Elevators stopped at `as_of`: newest frames in `out_of_service` mode, device offline,
    or an open incident of the accident class or a stopping fault (`STOPPING_KINDS`)."""
    outages = []
    for reason, samples, holds in (
        ("out_of_service", modes, lambda s: s.mode == "out_of_service"),
        ("offline", online, lambda s: not s.online),
    ):
        ordered = sorted((s for s in samples if s.at <= as_of), key=lambda s: (s.elevator_id, s.at))
        for elevator_id, group in groupby(ordered, key=lambda s: s.elevator_id):
            since = _trailing_run_start(list(group), holds)
            if since is not None:
                outages.append(Outage(elevator_id, reason, since))
    outages += [
        Outage(i.elevator_id, f"fault:{i.kind}", i.opened_at)
        for i in incidents
        if (i.closed_at is None or i.closed_at > as_of)
        and i.opened_at <= as_of
        and not i.drill
        and (i.incident_class == "accident" or i.kind in STOPPING_KINDS)
    ]
    return sorted(outages, key=lambda o: (o.elevator_id, o.since))


def _covers(notice: Notice, outage: Outage, as_of: datetime) -> bool:
    """A notice posted during the outage, or one posted before it (planned work) that still
    announces a return after its start."""
    if notice.elevator_id != outage.elevator_id or notice.posted_at > as_of:
        return False
    announced_return = notice.expected_return_at
    return notice.posted_at >= outage.since or (
        announced_return is not None and announced_return >= outage.since
    )


def outages_without_notice(
    outages: Iterable[Outage],
    notices: Iterable[Notice],
    as_of: datetime,
    after: timedelta = OUTAGE_NOTICE_AFTER,
) -> list[OutageWithoutNotice]:
    """Outages longer than `after` (exactly `after` is not yet) with no notice covering them."""
    notices = list(notices)
    return [
        OutageWithoutNotice(o.elevator_id, o.reason, o.since, round((as_of - o.since) / _HOUR, 2))
        for o in outages
        if as_of - o.since > after and not any(_covers(n, o, as_of) for n in notices)
    ]


def accidents_unreported(
    incidents: Iterable[Incident], as_of: datetime
) -> list[AccidentUnreported]:
    """Accident-class incidents (drills aside) whose regulator report was not recorded strictly
    before `report_deadline_at` (opened + 1 h, the same rule as the arrival clock), once that
    deadline has passed."""
    return [
        AccidentUnreported(
            i.id,
            i.elevator_id,
            i.kind,
            i.opened_at,
            i.report_deadline_at,
            i.regulator_reported_at,
        )
        for i in sorted(incidents, key=_chronological)
        if i.incident_class == "accident"
        and not i.drill
        and i.report_deadline_at is not None
        and as_of >= i.report_deadline_at
        and (i.regulator_reported_at is None or i.regulator_reported_at >= i.report_deadline_at)
    ]


def blacklist_candidates(
    incidents: Iterable[Incident],
    ending_from: datetime,
    count: int = BLACKLIST_COUNT,
    window: timedelta = BLACKLIST_WINDOW,
) -> list[BlacklistCandidate]:
    """Maintenance companies with >= `count` breached arrivals within `window` (365 days,
    inclusive) whose `count`-th breach is at or after `ending_from`. A breach happens at the
    incident's `deadline_at`."""
    by_company: dict[str, list[tuple[datetime, str]]] = {}
    for i in filter(counted, incidents):
        if i.sla == "breached" and i.maintenance_company is not None:
            by_company.setdefault(i.maintenance_company, []).append((i.deadline_at, i.id))
    rows = []
    for company, events in sorted(by_company.items()):
        cluster = _first_cluster(events, count, window, ending_from)
        if cluster:
            rows.append(
                BlacklistCandidate(
                    company,
                    len(cluster),
                    cluster[0][0],
                    cluster[-1][0],
                    tuple(e[1] for e in cluster),
                )
            )
    return rows


def drills_missing(
    incidents: Iterable[Incident],
    registry: Registry,
    as_of: datetime,
    interval: timedelta = DRILL_INTERVAL,
) -> list[DrillMissing]:
    """Companies (from the registry and incidents) whose last drill opened more than
    `interval` before `as_of`, or never; exactly `interval` is on time."""
    incidents = list(incidents)
    company_of = _group_key("maintenance_company", registry)
    companies = {r.get("maintenance_company") for r in registry} | {
        company_of(i) for i in incidents
    }
    last: dict[str, datetime] = {}
    for i in incidents:
        company = company_of(i)
        if i.drill and company is not None and i.opened_at <= as_of:
            last[company] = max(last.get(company, i.opened_at), i.opened_at)
    rows = []
    for company in sorted(c for c in companies if c is not None):
        drilled = last.get(company)
        if drilled is None or as_of - drilled > interval:
            days = (as_of - drilled).days if drilled is not None else None
            rows.append(DrillMissing(company, drilled, days))
    return rows


# -- data quality --------------------------------------------------------------------------
def arrival_evidence(
    incidents: Iterable[Incident], group_by: GroupBy, registry: Registry = ()
) -> list[ArrivalEvidence]:
    """Counted arrivals by evidence: telemetry-backed (with or without a crew report),
    reported only, telemetry only."""
    rows = []
    arrived = (i for i in filter(counted, incidents) if i.arrived_at is not None)
    for group, members in _grouped(arrived, _group_key(group_by, registry)):
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
                _pct(backed, len(members)),
            )
        )
    return rows


def offline_stretches(
    online: Iterable[OnlineSample],
    since: datetime,
    as_of: datetime,
    minimum: timedelta = LONG_OFFLINE,
) -> list[OfflineStretch]:
    """Stretches from an `online` 0 to the next 1 (or `as_of`) of at least `minimum`, that
    reach into [since, as_of]."""
    rows = []

    def stretch(elevator_id: str, down: datetime, back: datetime | None) -> None:
        end = back or as_of
        if end - down >= minimum and end >= since:
            rows.append(OfflineStretch(elevator_id, down, back, round((end - down) / _HOUR, 2)))

    ordered = sorted((s for s in online if s.at <= as_of), key=lambda s: (s.elevator_id, s.at))
    for elevator_id, group in groupby(ordered, key=lambda s: s.elevator_id):
        down: datetime | None = None
        for s in group:
            if not s.online:
                down = down or s.at
            elif down is not None:
                stretch(elevator_id, down, s.at)
                down = None
        if down is not None:
            stretch(elevator_id, down, None)
    return rows


def by_source(incidents: Iterable[Incident]) -> list[SourceFigures]:
    """Counted incidents and entrapments by how they were first reported (`source`), one
    row per source of the contract, in its order."""
    real = list(filter(counted, incidents))
    trapped = _entrapments(real)
    rows = []
    for source in SOURCES:
        n = sum(1 for i in trapped if i.source == source)
        rows.append(
            SourceFigures(
                source, sum(1 for i in real if i.source == source), n, _pct(n, len(trapped))
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
        key=lambda i: (i.elevator_id, _chronological(i)),
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


def without_telemetry(
    registry: Registry, modes: Iterable[ModeSample], online: Iterable[OnlineSample]
) -> list[WithoutTelemetry]:
    """Registered elevators the store has no telemetry of: no status frame within the
    telemetry look-back and no `online` change ever (reported by phone or citizens only)."""
    heard = {s.elevator_id for s in modes} | {s.elevator_id for s in online}
    return [
        WithoutTelemetry(r["elevator_id"], r.get("maintenance_company"), r.get("district"))
        for r in sorted(registry, key=lambda r: r["elevator_id"])
        if r["elevator_id"] not in heard
    ]


# -- the whole report ----------------------------------------------------------------------
SECTIONS: Final[dict[str, type]] = {
    "response-times": GroupFigures,
    "monthly-trend": GroupFigures,
    "arrival-histogram": HistogramBin,
    "breaches": Breach,
    "entrapment-rate": EntrapmentRate,
    "repeated-entrapments": RepeatedEntrapments,
    "causes": Cause,
    "maintenance-overdue": MaintenanceOverdue,
    "inspections-due": InspectionDue,
    "outages-without-notice": OutageWithoutNotice,
    "accidents-unreported": AccidentUnreported,
    "blacklist-candidates": BlacklistCandidate,
    "drills-missing": DrillMissing,
    "arrival-evidence": ArrivalEvidence,
    "offline-stretches": OfflineStretch,
    "sources": SourceFigures,
    "without-telemetry": WithoutTelemetry,
    "citizen-false-alarms": CitizenFalseAlarms,
}


def gather(source: Source, since: datetime, until: datetime, as_of: datetime) -> Inputs:
    """What `build` needs, with the look-back the rolling rules need before `since`."""
    return Inputs(
        incidents=source.list_incidents(since=since - BLACKLIST_WINDOW, until=until, limit=10**9),
        registry=source.all_elevators(),
        modes=source.status_modes(as_of - TELEMETRY_LOOKBACK, as_of),
        online=source.online_changes(as_of),
        notices=source.outage_notices(),
    )


def build(
    inputs: Inputs,
    since: datetime,
    until: datetime,
    as_of: datetime,
    zone: ZoneInfo,
    group_by: GroupBy,
) -> dict[str, list[Any]]:
    """Every section of `SECTIONS`. Period figures cover incidents opened in [since, until);
    compliance lists are the state at `as_of` (the report's end, or now if that is earlier)."""
    everything = inputs.incidents
    period = [i for i in everything if since <= i.opened_at < until]
    registry = inputs.registry
    outages = current_outages(inputs.modes, inputs.online, everything, as_of)
    return {
        "response-times": response_times(period, group_by, registry),
        "monthly-trend": monthly_trend(period, zone),
        "arrival-histogram": arrival_histogram(period),
        "breaches": breaches(period),
        "entrapment-rate": entrapment_rate(period, registry, group_by, since, until),
        "repeated-entrapments": repeated_entrapments(period),
        "causes": causes(period),
        "maintenance-overdue": maintenance_overdue(
            registry, maintenance_sessions(inputs.modes), as_of, zone
        ),
        "inspections-due": inspections_due(registry, as_of, zone),
        "outages-without-notice": outages_without_notice(outages, inputs.notices, as_of),
        "accidents-unreported": accidents_unreported(period, as_of),
        "blacklist-candidates": blacklist_candidates(everything, ending_from=since),
        "drills-missing": drills_missing(everything, registry, as_of),
        "arrival-evidence": arrival_evidence(period, group_by, registry),
        "offline-stretches": offline_stretches(inputs.online, since, as_of),
        "sources": by_source(period),
        "without-telemetry": without_telemetry(registry, inputs.modes, inputs.online),
        "citizen-false-alarms": citizen_false_alarms(period),
    }


# -- output --------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_json(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows as JSON objects; times RFC 3339 UTC, dates ISO."""
    return [{f.name: _plain(getattr(r, f.name)) for f in fields(r)} for r in rows]


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Lists space-separated, None empty; text a spreadsheet would run as a formula (an
    address or a note typed by anyone) gets a leading apostrophe, so it stays text. Line
    breaks become LF, which the writer quotes (a bare CR it leaves unquoted, and a
    spreadsheet would start a row there)."""
    if isinstance(value, list):
        value = " ".join(value)
    if value is None:
        return ""
    if isinstance(value, str):
        if value.startswith(_FORMULA_START):
            value = "'" + value
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def to_csv(row_type: type, rows: Iterable[Any]) -> str:
    """Rows as CSV with a header (also when empty); cells as `_csv_cell` makes them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(f.name for f in fields(row_type))
    for row in to_json(rows):
        writer.writerow(_csv_cell(v) for v in row.values())
    return out.getvalue()

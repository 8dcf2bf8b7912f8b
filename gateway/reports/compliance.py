"""Compliance lists: the duties of domain.md, as the state at `as_of`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Final
from zoneinfo import ZoneInfo

from gateway.reports._base import (
    HOUR,
    LABELS,
    Registry,
    by_id,
    chronological,
    counted,
    first_cluster,
    group_key,
    local_date,
)
from gateway.store.records import Episode, Incident, MaintenanceRecord, Notice

BLACKLIST_WINDOW: Final = timedelta(days=365)
BLACKLIST_COUNT: Final = 2
DRILL_INTERVAL: Final = timedelta(days=183)
MAINTENANCE_INTERVAL_DAYS: Final = 15
INSPECTION_NOTICE_DAYS: Final = 30
OUTAGE_NOTICE_AFTER: Final = timedelta(hours=24)
# EN 81-28: the alarm device places an automatic test call at least every 3 days.
ALARM_TEST_INTERVAL: Final = timedelta(hours=72)
# A reported visit is backed by a session that overlaps it, give or take this.
RECORD_MATCH_SLACK: Final = timedelta(hours=1)
# A maintenance visit seen in telemetry: a `maintenance`/`inspection` session at least this
# long (a silence ends a session: see gateway/episodes.py).
SESSION_MIN: Final = timedelta(minutes=10)
SESSION_MODES: Final = ("maintenance", "inspection")
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
    last_record_at: datetime | None  # addition: the maintenance unit's last reported visit


@dataclass(frozen=True, slots=True)
class MaintenanceReportedOnly:
    """A reported maintenance visit that no telemetry session backs."""

    elevator_id: str
    at: datetime
    company: str
    technician: str
    duration_min: int


@dataclass(frozen=True, slots=True)
class AlarmTestMissing:
    elevator_id: str
    maintenance_company: str | None
    last_test_at: datetime | None  # within the episodes read (31 days back)
    hours_since: float | None


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


def maintenance_sessions(
    episodes: Iterable[Episode], minimum: timedelta = SESSION_MIN
) -> list[MaintenanceSession]:
    """`maintenance`/`inspection` episodes lasting >= `minimum`, one straight after the other
    (the mode switched between them) taken as one. One still open ends at its last frame."""
    sessions: list[MaintenanceSession] = []
    ordered = sorted(
        (e for e in episodes if e.kind in SESSION_MODES),
        key=lambda e: (e.elevator_id, e.started_at),
    )
    for elevator_id, group in groupby(ordered, key=lambda e: e.elevator_id):
        runs: list[list[datetime]] = []
        for e in group:
            end = e.ended_at or e.last_seen_at
            if runs and runs[-1][1] == e.started_at:
                runs[-1][1] = end
            else:
                runs.append([e.started_at, end])
        sessions += [
            MaintenanceSession(elevator_id, start, end)
            for start, end in runs
            if end - start >= minimum
        ]
    return sessions


def record_window(record: MaintenanceRecord) -> tuple[datetime, datetime]:
    """The reported visit (from `at` for `duration_min`), give or take `RECORD_MATCH_SLACK`."""
    end = record.at + timedelta(minutes=record.duration_min)
    return record.at - RECORD_MATCH_SLACK, end + RECORD_MATCH_SLACK


def backed(record: MaintenanceRecord, sessions: Iterable[MaintenanceSession]) -> bool:
    """Whether a telemetry session of the elevator overlaps the record's window."""
    start, end = record_window(record)
    return any(
        s.elevator_id == record.elevator_id and s.start <= end and s.end >= start for s in sessions
    )


def maintenance_reported_only(
    records: Iterable[MaintenanceRecord],
    sessions: Iterable[MaintenanceSession],
    since: datetime,
    until: datetime,
) -> list[MaintenanceReportedOnly]:
    """Reported visits in [since, until) that no telemetry session backs (as reported-only
    arrivals are flagged): the visit may not have happened as reported."""
    sessions = list(sessions)
    return [
        MaintenanceReportedOnly(r.elevator_id, r.at, r.company, r.technician, r.duration_min)
        for r in sorted(records, key=lambda r: (r.at, r.elevator_id))
        if since <= r.at < until and not backed(r, sessions)
    ]


def maintenance_overdue(
    registry: Registry,
    sessions: Iterable[MaintenanceSession],
    as_of: datetime,
    zone: ZoneInfo,
    interval_days: int = MAINTENANCE_INTERVAL_DAYS,
    records: Iterable[MaintenanceRecord] = (),
) -> list[MaintenanceOverdue]:
    """Elevators whose last visit (the latest of the registry's `last_maintenance`, the
    local date of the last telemetry session and that of the last reported visit) is more
    than `interval_days` local calendar days before `as_of`, or that have none. Exactly
    `interval_days` is on time."""
    today = local_date(as_of, zone)
    last_session: dict[str, datetime] = {}
    for s in sessions:
        if s.end <= as_of and s.start > last_session.get(s.elevator_id, s.start - HOUR):
            last_session[s.elevator_id] = s.start
    last_record: dict[str, datetime] = {}
    for m in records:
        if m.at <= as_of and m.at > last_record.get(m.elevator_id, m.at - HOUR):
            last_record[m.elevator_id] = m.at
    registered_records = by_id(registry)
    rows = []
    for elevator_id in sorted(registered_records.keys() | last_session.keys()):
        record = registered_records.get(elevator_id, {})
        registered: date | None = record.get("last_maintenance")
        seen = last_session.get(elevator_id)
        reported = last_record.get(elevator_id)
        visits = [
            d
            for d in (
                registered,
                seen and local_date(seen, zone),
                reported and local_date(reported, zone),
            )
            if d is not None
        ]
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
                    reported,
                )
            )
    return rows


def alarm_tests_missing(
    registry: Registry,
    episodes: Iterable[Episode],
    as_of: datetime,
    interval: timedelta = ALARM_TEST_INTERVAL,
) -> list[AlarmTestMissing]:
    """Registered elevators whose alarm device's last `alarm_test` (at or before `as_of`) is
    more than `interval` before it, or that have none; exactly `interval` is on time."""
    last: dict[str, datetime] = {}
    for e in episodes:
        if e.kind == "alarm_test" and e.started_at <= as_of:
            last[e.elevator_id] = max(last.get(e.elevator_id, e.started_at), e.started_at)
    rows = []
    for r in sorted(registry, key=lambda r: r["elevator_id"]):
        tested = last.get(r["elevator_id"])
        if tested is None or as_of - tested > interval:
            hours = round((as_of - tested) / HOUR, 2) if tested is not None else None
            rows.append(
                AlarmTestMissing(r["elevator_id"], r.get("maintenance_company"), tested, hours)
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


def current_outages(
    episodes: Iterable[Episode], incidents: Iterable[Incident], as_of: datetime
) -> list[Outage]:
    """Elevators stopped at `as_of`: an `out_of_service` or `offline` episode open then, or
    an open incident of the accident class or a stopping fault (`STOPPING_KINDS`)."""
    outages = [
        Outage(e.elevator_id, e.kind, e.started_at)
        for e in episodes
        if e.kind in ("out_of_service", "offline")
        and e.started_at <= as_of
        and (e.ended_at is None or e.ended_at > as_of)
    ]
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
        OutageWithoutNotice(o.elevator_id, o.reason, o.since, round((as_of - o.since) / HOUR, 2))
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
        for i in sorted(incidents, key=chronological)
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
        cluster = first_cluster(events, count, window, ending_from)
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
    company_of = group_key("maintenance_company", registry)
    companies = {r.get("maintenance_company") for r in registry} | {
        company_of(i) for i in incidents
    }
    last: dict[str, datetime] = {}
    for i in incidents:
        company = company_of(i)
        if i.drill and i.opened_at <= as_of:
            last[company] = max(last.get(company, i.opened_at), i.opened_at)
    rows = []
    for company in sorted(c for c in companies if c is not None and c not in LABELS):
        drilled = last.get(company)
        if drilled is None or as_of - drilled > interval:
            days = (as_of - drilled).days if drilled is not None else None
            rows.append(DrillMissing(company, drilled, days))
    return rows

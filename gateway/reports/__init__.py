"""Regulator figures and compliance lists, as pure functions over stored incidents, the
registry, telemetry samples and outage notices, with `as_of` passed in (never read here).

By family: `rescue` (response times, arrivals, entrapments, causes), `compliance` (the
duties' lists), `quality` (evidence and data quality), `render` (JSON and CSV). This module
assembles the whole report and names every public function, so callers import from here.

Definitions (also in the README):
- counted: every incident except drills and those closed as `false_alarm`; every figure and
  list below uses counted incidents unless it says otherwise;
- arrived within the limit: `arrived_at` strictly before `deadline_at` (the incident's own,
  so per-district limits apply); `within_limit_pct` is over counted incidents whose arrival
  clock has an outcome (`sla` met or breached);
- acknowledged within the limit: answered strictly before `ack_deadline_at`, over all
  counted incidents; the answer is the acknowledgement, or the first forward step
  (dispatch, arrival, release, close) if that came first or none was recorded;
- groups: an elevator the registry does not know is `unregistered`, a registry record
  without the field `not recorded`;
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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from gateway.reports._base import (
    GroupBy,
    PeriodError,
    Registry,
    counted,
    local_date,
    p90,
    resolve_period,
    zone_named,
)
from gateway.reports.compliance import (
    ALARM_TEST_INTERVAL,
    BLACKLIST_COUNT,
    BLACKLIST_WINDOW,
    DRILL_INTERVAL,
    INSPECTION_NOTICE_DAYS,
    MAINTENANCE_INTERVAL_DAYS,
    OUTAGE_NOTICE_AFTER,
    RECORD_MATCH_SLACK,
    SESSION_MIN,
    SESSION_MODES,
    STOPPING_KINDS,
    AccidentUnreported,
    AlarmTestMissing,
    BlacklistCandidate,
    DrillMissing,
    InspectionDue,
    MaintenanceOverdue,
    MaintenanceReportedOnly,
    MaintenanceSession,
    Outage,
    OutageWithoutNotice,
    accidents_unreported,
    alarm_tests_missing,
    backed,
    blacklist_candidates,
    current_outages,
    drills_missing,
    inspections_due,
    maintenance_overdue,
    maintenance_reported_only,
    maintenance_sessions,
    outages_without_notice,
    record_window,
)
from gateway.reports.elevator_file import FileEntry, elevator_file
from gateway.reports.quality import (
    LONG_OFFLINE,
    ArrivalEvidence,
    CitizenFalseAlarms,
    OfflineStretch,
    SourceFigures,
    WithoutTelemetry,
    arrival_evidence,
    by_source,
    citizen_false_alarms,
    offline_stretches,
    without_telemetry,
)
from gateway.reports.render import to_csv, to_json
from gateway.reports.rescue import (
    HISTOGRAM_BIN_S,
    HISTOGRAM_LAST_S,
    REPEAT_COUNT,
    REPEAT_WINDOW,
    Breach,
    Cause,
    EntrapmentRate,
    GroupFigures,
    HistogramBin,
    RepeatedEntrapments,
    arrival_histogram,
    breaches,
    causes,
    entrapment_rate,
    monthly_trend,
    repeated_entrapments,
    response_times,
)
from gateway.store.records import Episode, Incident, MaintenanceRecord, Notice

__all__ = [
    "ALARM_TEST_INTERVAL",
    "BLACKLIST_COUNT",
    "BLACKLIST_WINDOW",
    "DRILL_INTERVAL",
    "HISTOGRAM_BIN_S",
    "HISTOGRAM_LAST_S",
    "INSPECTION_NOTICE_DAYS",
    "LONG_OFFLINE",
    "MAINTENANCE_INTERVAL_DAYS",
    "OUTAGE_NOTICE_AFTER",
    "RECORD_MATCH_SLACK",
    "REPEAT_COUNT",
    "REPEAT_WINDOW",
    "SECTIONS",
    "SESSION_MIN",
    "SESSION_MODES",
    "STOPPING_KINDS",
    "TELEMETRY_LOOKBACK",
    "AccidentUnreported",
    "AlarmTestMissing",
    "ArrivalEvidence",
    "BlacklistCandidate",
    "Breach",
    "Cause",
    "CitizenFalseAlarms",
    "DrillMissing",
    "EntrapmentRate",
    "Episode",
    "FileEntry",
    "GroupBy",
    "GroupFigures",
    "HistogramBin",
    "Inputs",
    "InspectionDue",
    "MaintenanceOverdue",
    "MaintenanceRecord",
    "MaintenanceReportedOnly",
    "MaintenanceSession",
    "Notice",
    "OfflineStretch",
    "Outage",
    "OutageWithoutNotice",
    "PeriodError",
    "Registry",
    "RepeatedEntrapments",
    "Source",
    "SourceFigures",
    "WithoutTelemetry",
    "accidents_unreported",
    "alarm_tests_missing",
    "arrival_evidence",
    "arrival_histogram",
    "backed",
    "blacklist_candidates",
    "breaches",
    "build",
    "by_source",
    "causes",
    "citizen_false_alarms",
    "counted",
    "current_outages",
    "drills_missing",
    "elevator_file",
    "entrapment_rate",
    "gather",
    "inspections_due",
    "local_date",
    "maintenance_overdue",
    "maintenance_reported_only",
    "maintenance_sessions",
    "monthly_trend",
    "offline_stretches",
    "outages_without_notice",
    "p90",
    "record_window",
    "repeated_entrapments",
    "resolve_period",
    "response_times",
    "to_csv",
    "to_json",
    "without_telemetry",
    "zone_named",
]

# Episodes looked back over for maintenance sessions; telemetry heard within it.
TELEMETRY_LOOKBACK: Final = timedelta(days=31)


# -- inputs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Inputs:
    incidents: Sequence[Incident]
    registry: Registry
    episodes: Sequence[Episode] = ()
    heard: frozenset[str] = frozenset()  # elevators heard from within the look-back
    notices: Sequence[Notice] = ()
    records: Sequence[MaintenanceRecord] = ()


class Source(Protocol):
    """Where `gather` reads from (the `Store`)."""

    def list_incidents(
        self, *, since: datetime | None, until: datetime | None, limit: int
    ) -> list[Incident]: ...

    def all_elevators(self) -> list[dict[str, Any]]: ...

    def episodes(self, since: datetime, until: datetime) -> list[Episode]: ...

    def heard_since(self, since: datetime) -> set[str]: ...

    def outage_notices(self) -> list[Notice]: ...

    def maintenance_records(self, since: datetime | None) -> list[MaintenanceRecord]: ...


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
    "maintenance-reported-only": MaintenanceReportedOnly,
    "inspections-due": InspectionDue,
    "outages-without-notice": OutageWithoutNotice,
    "accidents-unreported": AccidentUnreported,
    "blacklist-candidates": BlacklistCandidate,
    "drills-missing": DrillMissing,
    "alarm-tests-missing": AlarmTestMissing,
    "arrival-evidence": ArrivalEvidence,
    "offline-stretches": OfflineStretch,
    "sources": SourceFigures,
    "without-telemetry": WithoutTelemetry,
    "citizen-false-alarms": CitizenFalseAlarms,
}


def gather(source: Source, since: datetime, until: datetime, as_of: datetime) -> Inputs:
    """What `build` needs, with the look-back the rolling rules need before `since` (and
    the bulletin's previous period, of the same length)."""
    lookback = max(BLACKLIST_WINDOW, until - since)
    return Inputs(
        incidents=source.list_incidents(since=since - lookback, until=until, limit=10**9),
        registry=source.all_elevators(),
        episodes=source.episodes(min(since, as_of - TELEMETRY_LOOKBACK), as_of),
        heard=frozenset(source.heard_since(as_of - TELEMETRY_LOOKBACK)),
        notices=source.outage_notices(),
        records=source.maintenance_records(since=min(since, as_of - TELEMETRY_LOOKBACK)),
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
    outages = current_outages(inputs.episodes, everything, as_of)
    sessions = maintenance_sessions(inputs.episodes)
    return {
        "response-times": response_times(period, group_by, registry),
        "monthly-trend": monthly_trend(period, zone),
        "arrival-histogram": arrival_histogram(period),
        "breaches": breaches(period, registry),
        "entrapment-rate": entrapment_rate(period, registry, group_by, since, until),
        "repeated-entrapments": repeated_entrapments(period),
        "causes": causes(period),
        "maintenance-overdue": maintenance_overdue(
            registry, sessions, as_of, zone, records=inputs.records
        ),
        "maintenance-reported-only": maintenance_reported_only(
            inputs.records, sessions, since, until
        ),
        "inspections-due": inspections_due(registry, as_of, zone),
        "outages-without-notice": outages_without_notice(outages, inputs.notices, as_of),
        "accidents-unreported": accidents_unreported(period, as_of),
        "blacklist-candidates": blacklist_candidates(everything, ending_from=since),
        "drills-missing": drills_missing(everything, registry, as_of),
        "alarm-tests-missing": alarm_tests_missing(registry, inputs.episodes, as_of),
        "arrival-evidence": arrival_evidence(period, group_by, registry),
        "offline-stretches": offline_stretches(inputs.episodes, since, as_of),
        "sources": by_source(period),
        "without-telemetry": without_telemetry(registry, inputs.heard),
        "citizen-false-alarms": citizen_false_alarms(period),
    }

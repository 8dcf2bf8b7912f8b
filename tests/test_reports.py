"""Regulator figures and compliance lists on hand-computed data, boundaries included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway import reports
from gateway.frames import Frame
from gateway.incidents.model import Incident
from gateway.reports import (
    GroupFigures,
    MaintenanceRecord,
    MaintenanceSession,
    Notice,
    PeriodError,
)
from tests.test_episodes import alarm_test, online, status, track

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


def make_incident(
    incident_id: str,
    *,
    at: datetime = T0,
    elevator: str = "E1",
    company: str | None = "A",
    district: str | None = "North",
    kind: str = "entrapment",
    incident_class: str = "entrapment",
    arrival: timedelta | None = None,
    ack: timedelta | None = None,
    release: timedelta | None = None,
    breached: bool = False,
    drill: bool = False,
    resolution: str | None = "rescued",
    evidence: str = "reported",
    regulator_report: timedelta | None = None,
    closed: bool = True,
    people_trapped: int | None = None,
    rescue_level: int | None = None,
) -> Incident:
    """An incident opened at `at`; `arrival`, `ack`, `release` count from opening (release
    from arrival); the arrival limit is 30 minutes."""
    arrived = at + arrival if arrival is not None else None
    deadline = at + 30 * MIN
    sla = "pending"
    if arrived is not None:
        sla = "met" if arrived < deadline else "breached"
    elif breached:
        sla = "breached"
    return Incident(
        id=incident_id,
        elevator_id=elevator,
        kind=kind,
        severity="critical",
        incident_class=incident_class,
        state="closed" if closed else "open",
        rule=None,
        source="phone",
        opened_at=at,
        deadline_at=deadline,
        warning_at=at + 20 * MIN,
        ack_deadline_at=at + 3 * MIN,
        updated_at=at,
        sla=sla,
        drill=drill,
        district=district,
        maintenance_company=company,
        report_deadline_at=at + 60 * MIN if incident_class == "accident" else None,
        acknowledged_at=at + ack if ack is not None else None,
        arrived_at=arrived,
        arrival_reported_at=arrived if arrived is not None and "reported" in evidence else None,
        arrival_telemetry_at=arrived if arrived is not None and "telemetry" in evidence else None,
        released_at=arrived + release if arrived is not None and release is not None else None,
        closed_at=at + 2 * 60 * MIN if closed else None,
        resolution=resolution if closed else None,
        regulator_reported_at=at + regulator_report if regulator_report is not None else None,
        people_trapped=people_trapped,
        rescue_level=rescue_level,
    )


REGISTRY: list[dict[str, Any]] = [
    {"elevator_id": "E1", "maintenance_company": "A", "district": "North", "use_unit": "U1"},
    {"elevator_id": "E2", "maintenance_company": "A", "district": "North", "use_unit": "U2"},
    {"elevator_id": "E3", "maintenance_company": "B", "district": "South", "use_unit": "U2"},
]

# Company A, counted: arrivals 5, 10, 12, 20, 35 min and one breach with no arrival.
INCIDENTS = [
    make_incident(
        "a1",
        arrival=5 * MIN,
        ack=timedelta(seconds=60),
        release=3 * MIN,
        people_trapped=1,
        rescue_level=1,
    ),
    make_incident(
        "a2",
        arrival=10 * MIN,
        ack=timedelta(seconds=120),
        release=5 * MIN,
        people_trapped=2,
        rescue_level=2,
    ),
    make_incident("a3", arrival=12 * MIN, ack=timedelta(seconds=179), release=10 * MIN),
    make_incident("a4", arrival=20 * MIN, ack=timedelta(seconds=180), elevator="E2"),
    make_incident("a5", arrival=35 * MIN, elevator="E2", evidence="reported+telemetry"),
    make_incident("a6", breached=True, ack=timedelta(seconds=200), resolution="other"),
    # excluded from every figure: a drill and a false alarm, both slow
    make_incident("a7", arrival=50 * MIN, drill=True, ack=timedelta(seconds=10), people_trapped=5),
    make_incident("a8", arrival=60 * MIN, resolution="false_alarm", ack=timedelta(seconds=10)),
    # Company B: 8 and 16 minutes
    make_incident(
        "b1", arrival=8 * MIN, company="B", district="South", elevator="E3", evidence="telemetry"
    ),
    make_incident(
        "b2",
        arrival=16 * MIN,
        company="B",
        district="South",
        elevator="E3",
        ack=timedelta(seconds=30),
        kind="DOOR_LOCK_FAULT",
        incident_class="fault",
        resolution="self_recovered",
    ),
]


def test_response_times_every_figure_by_company() -> None:
    a, b = reports.response_times(INCIDENTS, "maintenance_company")
    assert a == GroupFigures(
        group="A",
        incidents=6,
        arrived=5,
        within_limit=4,
        within_limit_pct=66.67,  # 4 of 6 with an outcome (a5 late, a6 never arrived)
        arrival_median_s=720,  # 300 600 [720] 1200 2100
        arrival_p90_s=2100,  # nearest rank ceil(0.9 × 5) = 5th
        arrival_max_s=2100,
        breaches=2,
        acknowledged_within_limit_pct=50.0,  # 60, 120, 179 s; not 180 s (the limit), 200 s, none
        release_median_s=300,  # 180 [300] 600
        acknowledged_within_limit=3,
        breach_ids=("a5", "a6"),
        citizen_started=0,
        people_trapped=3,  # a1 and a2 recorded them; the drill's 5 do not count
        rescue_level_1=1,
        rescue_level_2=1,
        rescue_level_3=0,
    )
    assert (b.group, b.incidents, b.within_limit_pct) == ("B", 2, 100.0)
    assert b.arrival_median_s == 720  # mean of 480 and 960
    assert b.arrival_p90_s == 960  # ceil(0.9 × 2) = 2nd
    assert b.acknowledged_within_limit_pct == 50.0
    assert b.release_median_s is None


def test_p90_nearest_rank() -> None:
    assert reports.p90(list(range(1, 11))) == 9
    assert reports.p90(list(range(1, 12))) == 10
    assert reports.p90([7]) == 7
    assert reports.p90([]) is None


def test_groupings_by_district_use_unit_and_elevator() -> None:
    by_district = reports.response_times(INCIDENTS, "district")
    assert [(g.group, g.incidents) for g in by_district] == [("North", 6), ("South", 2)]
    by_unit = reports.response_times(INCIDENTS, "use_unit", REGISTRY)
    # E1 (U1): a1 a2 a3 a6; E2 (U2): a4 a5; E3 (U2): b1 b2
    assert [(g.group, g.incidents, g.arrived) for g in by_unit] == [("U1", 4, 3), ("U2", 4, 4)]
    by_elevator = reports.response_times(INCIDENTS, "elevator_id")
    assert [(g.group, g.incidents) for g in by_elevator] == [("E1", 4), ("E2", 2), ("E3", 2)]
    # An incident without a company takes the registry's.
    [g] = reports.response_times(
        [make_incident("x", company=None)], "maintenance_company", REGISTRY
    )
    assert g.group == "A"


def test_monthly_trend_buckets_by_local_month() -> None:
    last_minute_of_january = datetime(2026, 1, 31, 15, 59, tzinfo=UTC)  # 23:59 local
    first_minute_of_february = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)  # 00:00 local
    trend = reports.monthly_trend(
        [
            make_incident("j", at=last_minute_of_january, arrival=10 * MIN),
            make_incident("f1", at=first_minute_of_february, arrival=40 * MIN),
            make_incident("f2", at=first_minute_of_february + DAY, arrival=20 * MIN),
            make_incident("d", at=first_minute_of_february, drill=True),
        ],
        SHANGHAI,
    )
    assert [(m.group, m.incidents, m.within_limit_pct, m.arrival_median_s) for m in trend] == [
        ("2026-01", 1, 100.0, 600),
        ("2026-02", 2, 50.0, 1800),
    ]


def test_arrival_histogram_bins() -> None:
    bins = reports.arrival_histogram(INCIDENTS)
    assert len(bins) == 13 and bins[-1].from_s == 3600 and bins[-1].to_s is None
    counts = {b.from_s: b.arrivals for b in bins if b.arrivals}
    # 300 | 480, 600 | 720 | 960 | 1200 | 2100 (drill and false alarm left out)
    assert counts == {300: 2, 600: 2, 900: 1, 1200: 1, 2100: 1}


def test_breaches_listed_with_their_incidents() -> None:
    assert [(b.incident_id, b.arrival_s) for b in reports.breaches(INCIDENTS)] == [
        ("a5", 2100),
        ("a6", None),
    ]


def test_entrapments_per_elevator_year() -> None:
    since = datetime(2025, 3, 1, tzinfo=UTC)
    rows = reports.entrapment_rate(
        INCIDENTS, REGISTRY, "maintenance_company", since, since + 365 * DAY
    )
    # A: 2 elevators × 1 year, entrapments a1..a6 (not the drill or the false alarm);
    # B: 1 elevator, one entrapment (b2 is a fault).
    assert [
        (r.group, r.elevators, r.elevator_years, r.entrapments, r.per_elevator_year) for r in rows
    ] == [
        ("A", 2, 2.0, 6, 3.0),
        ("B", 1, 1.0, 1, 1.0),
    ]
    half = reports.entrapment_rate(INCIDENTS, REGISTRY, "district", since, since + 73 * DAY)
    assert [(r.group, r.elevator_years, r.per_elevator_year) for r in half] == [
        ("North", 0.4, 15.0),
        ("South", 0.2, 5.0),
    ]


def test_repeated_entrapments_within_90_days_inclusive() -> None:
    incidents = [
        make_incident("r1", elevator="R1"),
        make_incident("r2", elevator="R1", at=T0 + 45 * DAY),
        make_incident("r3", elevator="R1", at=T0 + 90 * DAY),
        make_incident("s1", elevator="S1"),
        make_incident("s2", elevator="S1", at=T0 + 45 * DAY),
        make_incident("s3", elevator="S1", at=T0 + 90 * DAY + timedelta(seconds=1)),
        make_incident("d1", elevator="D1"),
        make_incident("d2", elevator="D1", at=T0 + DAY),
        make_incident("d3", elevator="D1", at=T0 + 2 * DAY, drill=True),
    ]
    [row] = reports.repeated_entrapments(incidents)
    assert (row.elevator_id, row.entrapments, row.incident_ids) == ("R1", 3, ("r1", "r2", "r3"))
    assert (row.first_at, row.last_at) == (T0, T0 + 90 * DAY)


def test_causes_by_resolution_and_kind() -> None:
    rows = {(c.by, c.value): (c.incidents, c.pct) for c in reports.causes(INCIDENTS)}
    # 9 incidents (the drill left out, the false alarm kept as a cause)
    assert rows == {
        ("resolution", "rescued"): (6, 66.67),
        ("resolution", "false_alarm"): (1, 11.11),
        ("resolution", "other"): (1, 11.11),
        ("resolution", "self_recovered"): (1, 11.11),
        ("kind", "entrapment"): (8, 88.89),
        ("kind", "DOOR_LOCK_FAULT"): (1, 11.11),
    }


def test_blacklist_rolling_12_months_365_days_count_366_do_not() -> None:
    def breach(incident_id: str, company: str, at: datetime, **kw: Any) -> Incident:
        return make_incident(incident_id, company=company, at=at, breached=True, **kw)

    incidents = [
        breach("x1", "X", T0),
        breach("x2", "X", T0 + 365 * DAY),
        breach("y1", "Y", T0),
        breach("y2", "Y", T0 + 366 * DAY),
        breach("z1", "Z", T0),
        breach("z2", "Z", T0 + DAY, drill=True),
        breach("z3", "Z", T0 + DAY, resolution="false_alarm"),
    ]
    [x] = reports.blacklist_candidates(incidents, ending_from=T0)
    assert (x.maintenance_company, x.breaches, x.incident_ids) == ("X", 2, ("x1", "x2"))
    # the breach happens at the deadline, 30 minutes after opening
    assert (x.first_breach_at, x.last_breach_at) == (T0 + 30 * MIN, T0 + 365 * DAY + 30 * MIN)
    # a window that closed before the report's period is not listed
    assert reports.blacklist_candidates(incidents, ending_from=T0 + 366 * DAY) == []


def test_maintenance_sessions_from_telemetry() -> None:
    def s(minutes: float, mode: str) -> Frame:
        return status("E1", T0 + timedelta(minutes=minutes), mode)

    frames = [
        # 10 minutes exactly, maintenance then inspection: one visit
        s(0, "maintenance"), s(4, "maintenance"), s(6, "inspection"), s(10, "normal"),
        # 9 min 59 s: too short
        s(60, "maintenance"), s(60 + 599 / 60, "normal"),
        # silent for more than 5 minutes: ends at its last frame (4 minutes)
        s(120, "inspection"), s(124, "inspection"), s(140, "normal"),
        # still going at the end of the data
        s(200, "maintenance"), s(205, "maintenance"), s(210, "maintenance"), s(215, "maintenance"),
    ]  # fmt: skip
    assert reports.maintenance_sessions(track(frames)) == [
        MaintenanceSession("E1", T0, T0 + 10 * MIN),
        MaintenanceSession("E1", T0 + 200 * MIN, T0 + 215 * MIN),
    ]


def test_maintenance_overdue_after_15_local_days() -> None:
    as_of = datetime(2026, 3, 20, 4, 0, tzinfo=UTC)  # 12:00 on 20 March in Shanghai
    registry = [
        {"elevator_id": "M1", "last_maintenance": date(2026, 3, 5)},  # exactly 15 days
        {"elevator_id": "M2", "last_maintenance": date(2026, 3, 4), "maintenance_company": "A"},
        {"elevator_id": "M3"},  # never
        {"elevator_id": "M4", "last_maintenance": date(2026, 1, 1)},
        {"elevator_id": "M5", "last_maintenance": date(2026, 1, 1)},
    ]
    # 16:30 UTC on 4 March is 00:30 on 5 March in Shanghai: 15 local days, on time
    visit = datetime(2026, 3, 4, 16, 30, tzinfo=UTC)
    sessions = [
        MaintenanceSession("M4", visit, visit + 10 * MIN),
        MaintenanceSession("M5", visit - DAY, visit - DAY + 10 * MIN),
        MaintenanceSession("M6", as_of - 2 * DAY, as_of - 2 * DAY + 30 * MIN),  # unregistered
    ]
    rows = reports.maintenance_overdue(registry, sessions, as_of, SHANGHAI)
    assert [(r.elevator_id, r.last_visit, r.days_since) for r in rows] == [
        ("M2", date(2026, 3, 4), 16),
        ("M3", None, None),
        ("M5", date(2026, 3, 4), 16),
    ]
    assert rows[0].maintenance_company == "A"
    assert rows[2].telemetry_last_session_at == visit - DAY


def test_reported_maintenance_counts_and_is_flagged_without_a_session() -> None:
    as_of = datetime(2026, 3, 20, 4, 0, tzinfo=UTC)
    registry = [{"elevator_id": e, "last_maintenance": date(2026, 1, 1)} for e in ("R1", "R2")]
    seen = MaintenanceSession("R1", as_of - 3 * DAY - 50 * MIN, as_of - 3 * DAY - 20 * MIN)
    records = [
        MaintenanceRecord("R1", as_of - 3 * DAY, "A", "Li", ("brakes",), 30),  # the session an
        # hour (less 10 min) before it backs it
        MaintenanceRecord("R1", as_of - 2 * DAY, "A", "Li", (), 30),  # no session
        MaintenanceRecord("R1", as_of - 30 * DAY, "A", "Li", (), 30),  # before the period
    ]
    rows = reports.maintenance_overdue(registry, [seen], as_of, SHANGHAI, records=records)
    assert [r.elevator_id for r in rows] == ["R2"]  # R1's reported visit counts
    only = reports.maintenance_reported_only(records, [seen], as_of - 7 * DAY, as_of)
    assert [(r.elevator_id, r.at) for r in only] == [("R1", as_of - 2 * DAY)]


def test_inspections_due_within_30_local_days_or_overdue() -> None:
    as_of = datetime(2026, 3, 19, 17, 0, tzinfo=UTC)  # 01:00 on 20 March in Shanghai
    today = date(2026, 3, 20)
    registry = [
        {"elevator_id": "I1", "inspection_due": today + timedelta(days=30)},
        {"elevator_id": "I2", "inspection_due": today + timedelta(days=31)},
        {"elevator_id": "I3", "inspection_due": today},
        {"elevator_id": "I4", "inspection_due": today - timedelta(days=1)},
        {"elevator_id": "I5"},
    ]
    rows = reports.inspections_due(registry, as_of, SHANGHAI)
    assert [(r.elevator_id, r.days_left, r.status) for r in rows] == [
        ("I1", 30, "due"),
        ("I3", 0, "due"),
        ("I4", -1, "overdue"),
        ("I5", None, "unknown"),
    ]


def test_outages_over_24_hours_without_notice() -> None:
    as_of = T0
    h = timedelta(hours=1)
    episodes = track(
        [
            status("O1", as_of - 30 * h, "normal"),
            status("O1", as_of - 24 * h, "out_of_service"),  # exactly 24 h: not yet
            status("O1", as_of - h, "out_of_service"),
            status("O2", as_of - 24 * h - timedelta(seconds=1), "out_of_service"),
            status("O3", as_of - 48 * h, "out_of_service"),  # notice posted during it
            status("O6", as_of - 48 * h, "out_of_service"),  # planned, notice beforehand
            status("O7", as_of - 48 * h, "out_of_service"),  # only an old notice
            status("O8", as_of - 48 * h, "out_of_service"),  # back in service
            status("O8", as_of - 2 * h, "normal"),
            online("O4", as_of - 40 * h, True),
            online("O4", as_of - 30 * h, False),
            online("O4", as_of - 29 * h, False),
            status("O10", as_of - 30 * h, "out_of_service"),  # back after the moment looked at
            status("O10", as_of + h, "normal"),
        ]
    )
    incidents = [
        make_incident(
            "f1", elevator="O5", at=as_of - 25 * h, kind="SAFETY_CIRCUIT_OPEN",
            incident_class="fault", closed=False,
        ),
        make_incident(
            "f2", elevator="O9", at=as_of - 25 * h, kind="DOOR_FAIL_TO_CLOSE",
            incident_class="fault", closed=False,
        ),
    ]  # fmt: skip
    notices = [
        Notice("O3", as_of - 47 * h, "waiting for parts"),
        Notice("O6", as_of - 72 * h, "modernisation", expected_return_at=as_of + 24 * h),
        Notice("O7", as_of - 30 * DAY, "old", expected_return_at=as_of - 20 * DAY),
    ]
    outages = reports.current_outages(episodes, incidents, as_of)
    rows = reports.outages_without_notice(outages, notices, as_of)
    assert [(r.elevator_id, r.reason, r.hours) for r in rows] == [
        ("O10", "out_of_service", 30.0),
        ("O2", "out_of_service", 24.0),
        ("O4", "offline", 30.0),
        ("O5", "fault:SAFETY_CIRCUIT_OPEN", 25.0),
        ("O7", "out_of_service", 48.0),
    ]


def test_accidents_without_a_report_within_1_hour() -> None:
    as_of = T0 + 2 * 60 * MIN

    def accident(incident_id: str, **kw: Any) -> Incident:
        return make_incident(incident_id, kind="OVERSPEED", incident_class="accident", **kw)

    incidents = [
        accident("on_time", regulator_report=59 * MIN),
        accident("at_the_hour", regulator_report=60 * MIN),
        accident("never"),
        accident("clock_running", at=as_of - 30 * MIN),
        accident("drill", drill=True),
        make_incident("entrapment"),
    ]
    rows = reports.accidents_unreported(incidents, as_of)
    assert [(r.incident_id, r.regulator_reported_at) for r in rows] == [
        ("at_the_hour", T0 + 60 * MIN),
        ("never", None),
    ]


def test_alarm_self_tests_missing_over_72_hours() -> None:
    as_of = T0
    h = timedelta(hours=1)
    registry = [{"elevator_id": e, "maintenance_company": "A"} for e in ("A1", "A2", "A3", "A4")]
    episodes = track(
        [
            alarm_test("A1", as_of - 73 * h),  # listed
            alarm_test("A2", as_of - 71 * h),  # not
            alarm_test("A3", as_of - 72 * h),  # exactly 72 h: on time
            alarm_test("A3", as_of - 100 * h),
            alarm_test("A4", as_of + h),  # none by `as_of`: listed as never
            alarm_test("U1", as_of - 100 * h),  # not registered: not listed
        ]
    )
    rows = reports.alarm_tests_missing(registry, episodes, as_of)
    assert [(r.elevator_id, r.last_test_at, r.hours_since) for r in rows] == [
        ("A1", as_of - 73 * h, 73.0),
        ("A4", None, None),
    ]


def test_companies_without_a_drill_in_6_months() -> None:
    as_of = T0 + 400 * DAY
    incidents = [
        make_incident("a", company="A", drill=True, at=as_of - 183 * DAY),  # exactly: on time
        make_incident("b", company="B", drill=True, at=as_of - 183 * DAY - timedelta(seconds=1)),
        make_incident("b2", company="B", at=as_of - DAY),  # a real incident is no drill
        make_incident("later", company="B", drill=True, at=as_of + DAY),  # after as_of
    ]
    registry = [*REGISTRY, {"elevator_id": "E9", "maintenance_company": "C"}]
    rows = reports.drills_missing(incidents, registry, as_of)
    assert [(r.maintenance_company, r.last_drill_at, r.days_since) for r in rows] == [
        ("B", as_of - 183 * DAY - timedelta(seconds=1), 183),
        ("C", None, None),
    ]


def test_arrival_evidence() -> None:
    rows = reports.arrival_evidence(INCIDENTS, "maintenance_company")
    assert [
        (
            r.group,
            r.arrived,
            r.telemetry_backed,
            r.reported_only,
            r.telemetry_only,
            r.telemetry_backed_pct,
        )
        for r in rows
    ] == [("A", 5, 1, 4, 0, 20.0), ("B", 2, 1, 1, 1, 50.0)]


def test_offline_stretches_of_24_hours_or_more() -> None:
    as_of = T0
    h = timedelta(hours=1)
    episodes = track(
        [
            online("L1", as_of - 60 * h, False),
            online("L1", as_of - 36 * h, True),  # exactly 24 h
            online("L2", as_of - 30 * h, False),
            online("L2", as_of - 7 * h, True),  # 23 h
            online("L3", as_of - 30 * h, False),  # still offline
            online("L4", as_of - 100 * h, False),
            online("L4", as_of - 50 * h, True),  # long, but before the period
            online("L5", as_of - 30 * h, False),  # back after the moment looked at
            online("L5", as_of + h, True),
        ]
    )
    rows = reports.offline_stretches(episodes, since=as_of - 48 * h, as_of=as_of)
    assert [(r.elevator_id, r.online_at, r.hours) for r in rows] == [
        ("L1", as_of - 36 * h, 24.0),
        ("L3", None, 30.0),
        ("L5", None, 30.0),
    ]


def test_period_in_the_configured_zone() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    since, until, as_of = reports.resolve_period("2026-02-01", "2026-03-01", SHANGHAI, now)
    assert since == datetime(2026, 1, 31, 16, 0, tzinfo=UTC)
    assert until == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    assert as_of == until
    _, until, as_of = reports.resolve_period("2026-02-01T08:00", None, SHANGHAI, now)
    assert (until, as_of) == (now, now)
    since, _, _ = reports.resolve_period("2026-02-01T08:00:00+00:00", None, SHANGHAI, now)
    assert since == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(PeriodError) as bad:
        reports.resolve_period("yesterday", None, SHANGHAI, now)
    assert bad.value.field == "since"
    with pytest.raises(PeriodError):
        reports.resolve_period("2026-03-01", "2026-02-01", SHANGHAI, now)
    with pytest.raises(PeriodError) as bad:
        reports.zone_named("Mars/Olympus")
    assert bad.value.field == "timezone"


def test_build_limits_period_figures_and_keeps_history_for_rolling_rules() -> None:
    since = datetime(2026, 3, 1, tzinfo=UTC)
    old_breach = make_incident("old", at=since - 100 * DAY, breached=True)
    inputs = reports.Inputs(incidents=[old_breach, *INCIDENTS], registry=REGISTRY)
    built = reports.build(inputs, since, since + 31 * DAY, since + 31 * DAY, SHANGHAI, "district")
    assert set(built) == set(reports.SECTIONS)
    assert [g.incidents for g in built["response-times"]] == [6, 2]  # "old" is outside
    [candidate] = built["blacklist-candidates"]  # but counts towards the rolling 12 months
    assert candidate.incident_ids == ("old", "a5", "a6")


def test_csv_and_json_forms() -> None:
    rows = reports.breaches(INCIDENTS)
    text = reports.to_csv(reports.Breach, rows)
    lines = text.splitlines()
    assert lines[0] == (
        "incident_id,elevator_id,maintenance_company,district,opened_at,deadline_at,"
        "arrived_at,arrival_s,source"
    )
    assert lines[1] == (
        "a5,E2,A,North,2026-03-02T02:00:00Z,2026-03-02T02:30:00Z,2026-03-02T02:35:00Z,2100.0,phone"
    )
    assert lines[2].endswith(",,,phone")  # no arrival
    assert reports.to_csv(reports.Breach, []).count("\n") == 1  # header only
    figures = reports.to_json(reports.response_times(INCIDENTS, "maintenance_company"))
    assert figures[0]["breach_ids"] == ["a5", "a6"]
    assert list(figures[0])[:11] == [
        "group", "incidents", "arrived", "within_limit", "within_limit_pct",
        "arrival_median_s", "arrival_p90_s", "arrival_max_s", "breaches",
        "acknowledged_within_limit_pct", "release_median_s",
    ]  # fmt: skip

"""The regulator's bulletin on hand-computed incidents: headline figures and the previous
period, rescue classes apart from faults, the ranking, and how the HTML names things."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway import reports
from gateway.reports import bulletin_html
from gateway.reports._base import NOT_RECORDED, UNREGISTERED, responded_at
from gateway.reports.bulletin import FaultRow, bulletin
from tests.test_reports import MIN, make_incident

SHANGHAI = ZoneInfo("Asia/Shanghai")
SINCE = datetime(2026, 2, 28, 16, 0, tzinfo=UTC)  # 1 March, local midnight
UNTIL = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # 31 days later
T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
REGISTRY: list[dict[str, Any]] = [
    {"elevator_id": "E1", "maintenance_company": "A", "district": "North"},
    {"elevator_id": "E2", "maintenance_company": "A", "district": "North"},
    {"elevator_id": "E3", "maintenance_company": "B", "district": "South"},
    {"elevator_id": "E4", "maintenance_company": None, "district": None},
]
INCIDENTS = [
    # answered by the acknowledgement at 60 s; arrival 10:00, on site 4:00
    make_incident("i1", at=T, arrival=10 * MIN, ack=timedelta(seconds=60), release=4 * MIN),
    # no acknowledgement, but dispatched at 2:00: answered then; arrival 20:00, on site 6:00
    dataclasses.replace(
        make_incident("i2", at=T, elevator="E2", arrival=20 * MIN, release=6 * MIN),
        dispatched_at=T + 2 * MIN,
    ),
    # an accident: answered late (200 s), arrival 40:00 (breach), on site 2:00
    make_incident(
        "i3",
        at=T,
        elevator="E3",
        company="B",
        district="South",
        kind="OVERSPEED",
        incident_class="accident",
        arrival=40 * MIN,
        ack=timedelta(seconds=200),
        release=2 * MIN,
    ),
    # an unregistered car, never answered, the crew never came
    make_incident(
        "i4", at=T, elevator="GHOST", company=None, district=None, breached=True, closed=False
    ),
    # a fault: counted apart, not in any rescue figure
    make_incident(
        "f1",
        at=T,
        kind="DOOR_LOCK_FAULT",
        incident_class="fault",
        resolution="self_recovered",
    ),
    # left out: a companion of i1's episode (counted with its entrapment), a drill and a
    # false alarm, both slow
    dataclasses.replace(
        make_incident("c1", at=T, kind="STOP_OUTSIDE_DOOR_ZONE", incident_class="fault"),
        parent_id="i1",
    ),
    make_incident("d1", at=T, arrival=50 * MIN, drill=True),
    make_incident("x1", at=T, arrival=60 * MIN, resolution="false_alarm"),
    # the previous period (the 31 days before SINCE): one quick rescue, one fault
    make_incident("p1", at=T - 31 * 24 * 60 * MIN, arrival=5 * MIN, ack=timedelta(seconds=30)),
    make_incident(
        "p2",
        at=T - 31 * 24 * 60 * MIN,
        kind="DOOR_LOCK_FAULT",
        incident_class="fault",
        resolution="other",
    ),
]


def test_headline_figures_match_the_hand_computed_ones() -> None:
    b = bulletin(INCIDENTS, REGISTRY, SINCE, UNTIL, UNTIL)
    f = b.current
    assert (f.entrapments, f.accidents, f.rescues, f.elevators) == (3, 1, 4, 5)  # 4 + GHOST
    # 3 entrapments / 5 elevators / (31 / 30.4375 months) × 100
    assert f.per_100_per_month == round(100 * 3 / 5 / (31 / 30.4375), 3) == 58.911
    # i1 (60 s) and i2 (dispatch at 120 s) in time; i3 (200 s) late; i4 never answered
    assert (f.responded_in_time, f.responses, f.response_pct) == (2, 4, 50.0)
    assert (f.arrived_in_time, f.arrival_outcomes, f.arrival_pct) == (2, 4, 50.0)
    assert f.arrival_avg_s == (600 + 1200 + 2400) / 3 == 1400  # 23:20
    assert f.arrival_p90_s == 2400  # nearest rank: the 3rd of 3
    assert f.rescue_avg_s == (240 + 360 + 120) / 3  # 4:00
    assert (f.breaches, f.faults) == (2, 1)

    p = b.previous
    assert b.previous_since == SINCE - (UNTIL - SINCE)
    assert (p.entrapments, p.elevators, p.response_pct, p.arrival_pct) == (1, 4, 100.0, 100.0)
    assert (p.arrival_avg_s, p.breaches, p.faults) == (300, 0, 1)
    assert b.faults == [FaultRow("DOOR_LOCK_FAULT", 1, 1, 0, 1)]
    assert sum(x.arrivals for x in b.histogram) == 3  # rescues only: no fault, drill, false alarm
    assert [x.arrivals for x in b.histogram][2:4] == [1, 0] and b.histogram[8].arrivals == 1


def test_the_response_is_the_first_of_acknowledgement_and_forward_steps() -> None:
    [i1, i2, _i3, i4, *_] = INCIDENTS
    assert responded_at(i1) == T + timedelta(seconds=60)
    assert responded_at(i2) == T + 2 * MIN
    assert responded_at(i4) is None
    # an acknowledgement recorded after the dispatch does not move the answer later
    late_ack = dataclasses.replace(i2, acknowledged_at=T + 10 * MIN)
    assert responded_at(late_ack) == T + 2 * MIN
    # an unanswered incident whose 3 minutes have not run out is not counted yet
    fresh = make_incident("n1", at=UNTIL - MIN, closed=False)
    f = bulletin([fresh], REGISTRY, SINCE, UNTIL, UNTIL).current
    assert (f.entrapments, f.responses, f.response_pct) == (1, 0, None)


def test_ranking_is_worst_first_and_names_every_group() -> None:
    b = bulletin(INCIDENTS, REGISTRY, SINCE, UNTIL, UNTIL)
    # B: 1 breach with 40:00; unregistered: 1 breach, no arrival; A: none; E4's empty field
    assert [r.group for r in b.companies] == ["B", UNREGISTERED, "A", NOT_RECORDED]
    assert [r.group for r in b.districts] == ["South", UNREGISTERED, "North", NOT_RECORDED]
    a = b.companies[2].figures
    assert (a.elevators, a.rescues, a.arrival_pct, a.response_pct) == (2, 2, 100.0, 100.0)
    assert b.companies[3].figures.elevators == 1 and b.companies[3].figures.rescues == 0


def test_html_names_unregistered_and_shows_minutes_and_previous() -> None:
    b = bulletin(INCIDENTS, REGISTRY, SINCE, UNTIL, UNTIL)
    lists = reports.build(
        reports.Inputs(INCIDENTS, REGISTRY), SINCE, UNTIL, UNTIL, SHANGHAI, "maintenance_company"
    )
    html = bulletin_html.document(b, lists, SHANGHAI, 1800)
    assert "None" not in html and "null" not in html
    assert html.count("unregistered") >= 2  # both rankings
    assert 'data-figure="arrival-avg"' in html and ">23:20<" in html and ">5:00<" in html
    assert ">40:00<" in html and ">4:00<" in html and "50.00 %" in html
    assert "2026-03-10 10:00" in html  # i3's report, local time in the breaches list
    assert 'id="period">2026-03-01 00:00 – 2026-04-01 00:00<' in html
    assert "门锁回路故障" in html and "Door lock fault" in html
    assert html.count('class="bar') == 13 and 'id="limit-line"' in html
    assert bulletin_html.mmss(477.19336350000003) == "7:57"
    assert bulletin_html.mmss(4503) == "75:03"


def test_every_report_section_names_the_unregistered_never_none() -> None:
    groups = [g.group for g in reports.response_times(INCIDENTS, "maintenance_company", REGISTRY)]
    assert groups == ["A", "B", UNREGISTERED]
    assert [
        (b.incident_id, b.maintenance_company, b.district)
        for b in reports.breaches(INCIDENTS, REGISTRY)
    ] == [("i3", "B", "South"), ("i4", UNREGISTERED, UNREGISTERED)]
    rates = reports.entrapment_rate(INCIDENTS, REGISTRY, "district", SINCE, UNTIL)
    assert {r.group for r in rates} == {"North", "South", NOT_RECORDED, UNREGISTERED}
    # the labels are not companies: no drill is asked of them
    assert [d.maintenance_company for d in reports.drills_missing(INCIDENTS, REGISTRY, UNTIL)] == [
        "B"
    ]

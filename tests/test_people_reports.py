"""Phone-in reports (`POST /api/incidents`) and telemetry on one incident, on real Mosquitto
and SQLite. The gateway's clock moves only when a test advances it, so every time asserted
is exact: the clock starts at the earliest report, and the breach fires at its deadline."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from gateway import reports
from gateway.app import Gateway
from tests.conftest import Device, Subscriber, status_frame, wait_for
from tests.people import ARRIVAL_LIMIT_S, call, clock, gw, incidents_of, register, url
from tests.test_reports import make_incident

__all__ = ["gw"]  # the fixture

TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 4}
HOLD_S = 20  # the default rule `trapped_between_floors`


def phone(gw: Gateway, elevator_id: str, at: datetime | None = None) -> tuple[int, dict[str, Any]]:
    body = {"elevator_id": elevator_id, "kind": "entrapment", "source": "phone"}
    if at is not None:
        body["reported_at"] = at.isoformat()
    response = call(gw, "POST", "/api/incidents", body=body)
    return response.status_code, response.json()


def trapped_car(gw: Gateway, device: Device, elevator_id: str) -> datetime:
    """One frame of a car stopped between floors with a passenger, then silence (which the
    rule still fires on); returns when the gateway received it."""
    device.publish(f"elevators/{elevator_id}/status", status_frame(elevator_id, 0, **TRAPPED))
    wait_for(lambda: gw.incidents.last_frame(elevator_id))
    return clock(gw).now()


def get(gw: Gateway, incident_id: str) -> dict[str, Any]:
    return call(gw, "GET", f"/api/incidents/{incident_id}").json()


def entrapments(gw: Gateway, elevator_id: str) -> list[dict[str, Any]]:
    return [i for i in incidents_of(gw, elevator_id) if i["kind"] == "entrapment"]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_phone_then_telemetry_is_one_incident_timed_from_the_call(
    gw: Gateway, device: Device, prefix: str
) -> None:
    car = f"{prefix}-pt"
    called_at = clock(gw).now()
    status, incident = phone(gw, car)
    assert status == 201 and incident["source"] == "phone"

    clock(gw).advance(30)
    received = trapped_car(gw, device, car)
    clock(gw).advance(HOLD_S + 1)  # the rule fires at received + 20 s and joins the call
    wait_for(lambda: "confirmed by telemetry" in str(entrapments(gw, car)[0]["timeline"]))

    [joined] = entrapments(gw, car)
    assert joined["id"] == incident["id"]
    assert at(joined["opened_at"]) == called_at
    assert at(joined["deadline_at"]) == called_at + timedelta(seconds=ARRIVAL_LIMIT_S)
    assert joined["source"] == "phone"  # how it was first reported
    [opened, confirmed] = joined["timeline"]
    assert "(phone)" in opened["what"]
    assert "rule trapped_between_floors" in confirmed["what"]
    assert at(confirmed["at"]) == received + timedelta(seconds=HOLD_S)
    # The telemetry is attached as evidence: the black box holds the car's frame.
    frames = call(gw, "GET", f"/api/incidents/{incident['id']}/frames").json()
    assert [f["body"]["door_zone"] for f in frames] == [False]


def test_telemetry_then_phone_joins_and_an_earlier_call_moves_the_clock(
    gw: Gateway, device: Device, prefix: str
) -> None:
    car = f"{prefix}-tp"
    received = trapped_car(gw, device, car)
    clock(gw).advance(HOLD_S + 1)
    [detected] = wait_for(lambda: entrapments(gw, car))
    assert detected["source"] == "telemetry"
    detected_at = received + timedelta(seconds=HOLD_S)
    assert at(detected["opened_at"]) == detected_at

    clock(gw).advance(60)
    status, joined = phone(gw, car)
    assert status == 200 and joined["id"] == detected["id"]
    assert at(joined["opened_at"]) == detected_at
    assert joined["source"] == "telemetry"
    assert "(phone)" in joined["timeline"][-1]["what"]

    # A caller who says the passenger has been stuck since before the car was detected:
    # the earliest report starts the clock, and it is how the incident was first reported.
    earlier = detected_at - timedelta(seconds=45)
    status, moved = phone(gw, car, at=earlier)
    assert status == 200 and moved["id"] == detected["id"]
    assert at(moved["opened_at"]) == earlier
    assert at(moved["deadline_at"]) == earlier + timedelta(seconds=ARRIVAL_LIMIT_S)
    assert moved["source"] == "phone"
    assert len(entrapments(gw, car)) == 1


def test_phone_report_for_an_elevator_without_telemetry_breaches_at_its_deadline(
    gw: Gateway, broker, prefix: str
) -> None:
    car = f"{prefix}-nt"
    register(gw, car, district="Wuhou", maintenance_company="Shu Lifts", address="1 Old Road")
    alerts = Subscriber(broker.url, "dispatch/alerts")
    try:
        status, incident = phone(gw, car)
        assert status == 201
        assert (incident["maintenance_company"], incident["sla"]) == ("Shu Lifts", "pending")
        deadline = at(incident["deadline_at"])
        assert deadline == at(incident["opened_at"]) + timedelta(seconds=ARRIVAL_LIMIT_S)

        # One second before the deadline: warned, not breached (the clock stands still here).
        clock(gw).advance(ARRIVAL_LIMIT_S - 1)
        wait_for(lambda: "warning" in str(get(gw, incident["id"])["timeline"]))
        assert get(gw, incident["id"])["sla"] == "pending"

        clock(gw).advance(1)
        wait_for(lambda: get(gw, incident["id"])["sla"] == "breached")
        breached = get(gw, incident["id"])
        [entry] = [e for e in breached["timeline"] if e["what"].startswith("breach")]
        assert at(entry["at"]) == deadline
        breach_alert = wait_for(lambda: _alert(alerts, incident["id"], "breach"))
        assert breach_alert["severity"] == "critical" and breach_alert["source"] == "phone"
    finally:
        alerts.close()


def _alert(sub: Subscriber, incident_id: str, alert_type: str) -> dict[str, Any] | None:
    found = [json.loads(p) for _t, p in sub.messages]
    return next(
        (a for a in found if a.get("incident_id") == incident_id and a.get("type") == alert_type),
        None,
    )


# -- regulator figures by source -------------------------------------------------------------
def test_figures_by_source_count_counted_incidents_and_entrapments() -> None:
    def made(n: int, source: str, **kw: Any) -> Any:
        return replace(make_incident(f"I{n}", **kw), source=source)

    rows = reports.by_source([
        made(1, "telemetry"), made(2, "phone"), made(3, "phone"), made(4, "citizen"),
        made(5, "citizen", kind="CITIZEN_REPORT", incident_class="fault"),
        made(6, "phone", drill=True), made(7, "citizen", resolution="false_alarm"),
    ])  # fmt: skip
    assert [(r.source, r.incidents, r.entrapments, r.entrapments_pct) for r in rows] == [
        ("telemetry", 1, 1, 25.0),
        ("phone", 2, 2, 50.0),
        ("citizen", 2, 1, 25.0),
        ("property", 0, 0, 0.0),
        ("other", 0, 0, 0.0),
    ]


def test_elevators_without_telemetry_are_those_the_store_never_heard_from() -> None:
    registry = [{"elevator_id": e, "district": "North"} for e in ("A", "B", "C", "D")]
    rows = reports.without_telemetry(registry, {"A", "B", "X"})
    assert [(r.elevator_id, r.district) for r in rows] == [("C", "North"), ("D", "North")]


def test_reports_api_counts_people_and_telemetry(gw: Gateway, device: Device, prefix: str) -> None:
    by_phone, by_car, by_citizen = f"{prefix}-rp", f"{prefix}-rt", f"{prefix}-rc"
    for elevator_id in (by_phone, by_car, by_citizen):
        register(gw, elevator_id, maintenance_company="Shu Lifts")
    phone(gw, by_phone)
    trapped_car(gw, device, by_car)
    clock(gw).advance(HOLD_S + 1)
    wait_for(lambda: entrapments(gw, by_car))
    form = {"problem": "trapped"}
    assert httpx.post(url(gw, f"/e/{by_citizen}/report"), data=form).status_code == 303
    wait_for(lambda: gw.store.telemetry_lines(by_car))  # the car's frame is stored
    clock(gw).advance(1)  # a report's period ends now, exclusive

    figures = call(gw, "GET", "/api/reports", "regulator").json()
    counts = {r["source"]: r["entrapments"] for r in figures["sources"]}
    assert counts == {"telemetry": 1, "phone": 1, "citizen": 1, "property": 0, "other": 0}
    silent = {r["elevator_id"] for r in figures["without-telemetry"]}
    assert {by_phone, by_citizen} <= silent and by_car not in silent

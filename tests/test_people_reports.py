"""Phone-in reports (`POST /api/incidents`) and telemetry on one incident, on real Mosquitto
and SQLite. The gateway's clock moves only when a test advances it, so every time asserted
is exact: the clock starts at the earliest report, and the breach fires at its deadline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gateway.app import Gateway
from tests.conftest import Device, Subscriber, status_frame, wait_for
from tests.people import ARRIVAL_LIMIT_S, call, clock, gw, incidents_of, register

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

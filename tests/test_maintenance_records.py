"""Maintenance records through the API: recorded by admins, counted by the 15-day rule, and
flagged when no telemetry session backs them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.app import Gateway
from gateway.store.records import Episode
from tests.people import call, clock, gw, register

__all__ = ["gw"]  # the fixture


def _listed(gw: Gateway, name: str, elevator_id: str) -> list[dict[str, Any]]:
    r = call(gw, "GET", f"/api/reports/{name}", role="regulator")
    assert r.status_code == 200, r.text
    return [row for row in r.json() if row["elevator_id"] == elevator_id]


def test_maintenance_records_count_and_are_flagged_without_telemetry(
    gw: Gateway, prefix: str
) -> None:
    car = f"{prefix}-mr"
    register(gw, car, maintenance_company="Shu Lifts")
    assert _listed(gw, "maintenance-overdue", car)
    now = clock(gw).now()
    visit = {"company": "Shu Lifts", "technician": "Li Wei", "items": ["brakes", "doors"]}
    r = call(gw, "POST", f"/api/elevators/{car}/maintenance", body=visit | {"duration_min": 30})
    assert r.status_code == 403  # dispatchers may not
    r = call(
        gw,
        "POST",
        f"/api/elevators/{car}/maintenance",
        role="admin",
        body=visit | {"duration_min": 30, "at": (now - timedelta(hours=6)).isoformat()},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["telemetry_backed"], r.json()["items"]) == (False, ["brakes", "doors"])
    assert _listed(gw, "maintenance-overdue", car) == []
    [flagged] = _listed(gw, "maintenance-reported-only", car)
    assert flagged["technician"] == "Li Wei"

    # a visit the telemetry saw: a maintenance session over the reported time
    start = now - timedelta(minutes=50)
    gw.store.save_episodes([Episode(car, "maintenance", start, now - timedelta(minutes=5), now)])
    r = call(
        gw,
        "POST",
        f"/api/elevators/{car}/maintenance",
        role="admin",
        body=visit | {"duration_min": 40, "at": start.isoformat()},
    )
    assert r.json()["telemetry_backed"] is True
    assert len(_listed(gw, "maintenance-reported-only", car)) == 1  # the first one only

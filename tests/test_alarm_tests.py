"""The alarm device's self-test (EN 81-28) through a running gateway: an `ALARM_TEST` event
is recorded, and 72 h without one lists the elevator and flags its page's data."""

from __future__ import annotations

from typing import Any

from gateway.app import Gateway
from tests.conftest import Device, event_frame, wait_for
from tests.people import call, clock, gw, register

__all__ = ["gw"]  # the fixture


def _missing(gw: Gateway, elevator_id: str) -> list[dict[str, Any]]:
    r = call(gw, "GET", "/api/reports/alarm-tests-missing", role="regulator")
    assert r.status_code == 200, r.text
    return [row for row in r.json() if row["elevator_id"] == elevator_id]


def _elevator(gw: Gateway, elevator_id: str) -> dict[str, Any]:
    r = call(gw, "GET", f"/api/elevators/{elevator_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_alarm_tests_missing_after_72_hours(gw: Gateway, device: Device, prefix: str) -> None:
    car = f"{prefix}-a"
    register(gw, car, maintenance_company="Shu Lifts")
    [never] = _missing(gw, car)
    assert never["last_test_at"] is None
    tested_at = clock(gw).now()
    device.publish(
        f"elevators/{car}/event", event_frame(car, 1, "ALARM_TEST", ts=tested_at.isoformat())
    )
    wait_for(lambda: _elevator(gw, car)["last_alarm_test_at"] is not None)
    clock(gw).advance(71 * 3600)
    assert _missing(gw, car) == []
    assert _elevator(gw, car)["alarm_test_overdue"] is False
    clock(gw).advance(2 * 3600)  # 73 h
    [row] = _missing(gw, car)
    assert (row["hours_since"], row["maintenance_company"]) == (73.0, "Shu Lifts")
    page = _elevator(gw, car)
    assert page["alarm_test_overdue"] is True
    assert page["last_alarm_test_at"] == tested_at.isoformat().replace("+00:00", "Z")

"""Rescue details through the API: a district whose arrival clock starts at the dispatch
order (both times kept), and the people trapped and rescue level reached, in the figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.clock import FixedClock
from tests.conftest import gateway_up, wait_for
from tests.people import ARRIVAL_LIMIT_S, TOKENS, call, clock, register

DISPATCH = timedelta(minutes=5)


@pytest.fixture
def gw(gateway_settings: Any) -> Iterator[Gateway]:
    settings = gateway_settings(
        tsdb_url="",
        tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()),
        arrival_limit_s=ARRIVAL_LIMIT_S,
        district_clock_start={"West": "dispatched"},
    )
    with Gateway(settings, FixedClock(datetime.now(UTC).replace(microsecond=0))) as gateway:
        assert gateway.session.wait_connected(10)
        wait_for(lambda: gateway_up(gateway))
        yield gateway


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_clock_start_per_district_and_rescue_details(gw: Gateway, prefix: str) -> None:
    west, north = f"{prefix}-w", f"{prefix}-n"
    register(gw, west, district="West", maintenance_company="Shu Lifts")
    register(gw, north, district="North", maintenance_company="Shu Lifts")
    t0 = clock(gw).now()
    opened = {}
    for car in (west, north):
        body = {"elevator_id": car, "kind": "entrapment", "source": "phone"}
        r = call(gw, "POST", "/api/incidents", body=body)
        assert r.status_code == 201, r.text
        opened[car] = r.json()
    assert (opened[west]["clock_start"], opened[north]["clock_start"]) == ("dispatched", "reported")
    limit = timedelta(seconds=ARRIVAL_LIMIT_S)
    # until dispatched, the clock runs from the report (an undispatched car still breaches)
    assert at(opened[west]["deadline_at"]) == t0 + limit

    clock(gw).advance(DISPATCH.total_seconds())
    dispatched = {}
    for car in (west, north):
        path = f"/api/incidents/{opened[car]['id']}/dispatch"
        dispatched[car] = call(gw, "POST", path, body={"crew_id": "c1"}).json()
    assert at(dispatched[west]["deadline_at"]) == t0 + DISPATCH + limit
    assert at(dispatched[north]["deadline_at"]) == t0 + limit
    for car in (west, north):  # both times are kept
        assert at(dispatched[car]["opened_at"]) == t0
        assert at(dispatched[car]["dispatched_at"]) == t0 + DISPATCH

    incident_id = opened[west]["id"]
    r = call(gw, "POST", f"/api/incidents/{incident_id}/rescue-details", body={})
    assert r.status_code == 422
    call(gw, "POST", f"/api/incidents/{incident_id}/close", body={"resolution": "rescued"})
    body = {"people_trapped": 2, "rescue_level": 2}
    r = call(gw, "POST", f"/api/incidents/{incident_id}/rescue-details", body=body)
    assert r.status_code == 200, r.text  # after the close too
    assert (r.json()["people_trapped"], r.json()["rescue_level"]) == (2, 2)
    r = call(gw, "GET", "/api/metrics/response-times?group_by=elevator_id", role="regulator")
    [figures] = [g for g in r.json() if g["group"] == west]
    assert (figures["people_trapped"], figures["rescue_level_2"]) == (2, 1)

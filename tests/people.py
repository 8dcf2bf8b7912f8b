"""Shared by the tests of reports from people: a gateway on a clock the test moves by hand
(so every deadline is exact and nothing depends on how fast the machine is), and API calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.clock import FixedClock
from tests.conftest import gateway_up, wait_for

TOKENS = {
    "dispatcher": "d-people-token-0123456789",
    "regulator": "r-people-token-0123456789",
    "admin": "a-people-token-0123456789",
}
ARRIVAL_LIMIT_S = 600
ARRIVAL_WARNING_S = 300


@pytest.fixture
def gw(gateway_settings) -> Iterator[Gateway]:
    settings = gateway_settings(
        tsdb_url="",
        tick_interval_s=0.02,
        tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()),
        arrival_limit_s=ARRIVAL_LIMIT_S,
        arrival_warning_s=ARRIVAL_WARNING_S,
    )
    # Close to real time, so the devices' own `ts` is not flagged as skewed.
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    with Gateway(settings, clock) as gateway:
        assert gateway.session.wait_connected(10)
        wait_for(lambda: gateway_up(gateway))
        yield gateway


def clock(gw: Gateway) -> FixedClock:
    assert isinstance(gw.clock, FixedClock)
    return gw.clock


def url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.settings.http_port}{path}"


def call(
    gw: Gateway, method: str, path: str, role: str = "dispatcher", body: Any = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    return httpx.request(method, url(gw, path), headers=headers, json=body, timeout=10)


def register(gw: Gateway, elevator_id: str, **record: Any) -> None:
    response = call(gw, "PUT", f"/api/elevators/{elevator_id}", "admin", record)
    assert response.status_code in (200, 201), response.text


def incidents_of(gw: Gateway, elevator_id: str) -> list[dict[str, Any]]:
    response = call(gw, "GET", f"/api/incidents?state=all&elevator_id={elevator_id}")
    assert response.status_code == 200, response.text
    return response.json()

"""The compliance lists answer the same whatever the time-series store: two gateways on one
broker and one clock, one with the embedded store (SQLite), one writing to VictoriaMetrics
(and PostgreSQL), take the same frames; every list is compared."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.clock import FixedClock
from tests.conftest import Device, gateway_up, status_frame, wait_for
from tests.people import TOKENS

COMPLIANCE = (
    "maintenance-overdue",
    "inspections-due",
    "outages-without-notice",
    "drills-missing",
    "offline-stretches",
    "without-telemetry",
)


@pytest.fixture
def pair(gateway_settings: Any, pg_url: str, tmp_path: Any) -> Iterator[list[Gateway]]:
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    tokens = ",".join(f"{role}:{tok}" for role, tok in TOKENS.items())
    embedded = gateway_settings(
        tsdb_url="",
        tokens=tokens,
        mqtt_client_id="gw-emb-" + tmp_path.name[-8:],
        store_url=f"sqlite:///{tmp_path / 'embedded.db'}",
        spool_dir=tmp_path / "spool-embedded",
    )
    victoria = gateway_settings(
        tokens=tokens,
        mqtt_client_id="gw-vm-" + tmp_path.name[-8:],
        store_url=pg_url,
        spool_dir=tmp_path / "spool-vm",
    )
    with Gateway(embedded, clock) as a, Gateway(victoria, clock) as b:
        for gw in (a, b):
            assert gw.session.wait_connected(10)
            wait_for(lambda gw=gw: gateway_up(gw))
        yield [a, b]


def _get(gw: Gateway, path: str) -> Any:
    r = httpx.get(
        f"http://127.0.0.1:{gw.settings.http_port}{path}",
        headers={"Authorization": f"Bearer {TOKENS['regulator']}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _put(gw: Gateway, elevator_id: str, record: dict[str, Any]) -> None:
    r = httpx.put(
        f"http://127.0.0.1:{gw.settings.http_port}/api/elevators/{elevator_id}",
        headers={"Authorization": f"Bearer {TOKENS['admin']}"},
        json=record,
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text


def _lists(gw: Gateway, prefix: str) -> dict[str, list[dict[str, Any]]]:
    report = _get(gw, "/api/reports")
    return {
        name: [
            r
            for r in report[name]
            if r.get("elevator_id", r.get("maintenance_company", "")).startswith(prefix)
        ]
        for name in COMPLIANCE
    }


def test_compliance_lists_agree_on_embedded_and_victoriametrics(
    pair: list[Gateway], device: Device, prefix: str
) -> None:
    serviced, dark, never = f"{prefix}-m", f"{prefix}-o", f"{prefix}-n"
    clock = pair[0].clock
    assert isinstance(clock, FixedClock)
    for gw in pair:
        for eid in (serviced, dark, never):
            _put(gw, eid, {"maintenance_company": prefix, "district": "North"})
    before = {gw.settings.store_url: _lists(gw, prefix) for gw in pair}
    for lists in before.values():
        overdue = {r["elevator_id"] for r in lists["maintenance-overdue"]}
        assert overdue == {serviced, dark, never}

    # 40 minutes in maintenance mode, a frame a minute (device time), then back to normal
    start = clock.now()
    for minute in range(41):
        mode = "maintenance" if minute < 40 else "normal"
        at = (start + timedelta(minutes=minute)).isoformat()
        device.publish(
            f"elevators/{serviced}/status", status_frame(serviced, minute, ts=at, mode=mode)
        )
    device.publish(f"elevators/{dark}/status", status_frame(dark, 0, ts=start.isoformat()))
    device.publish(f"elevators/{dark}/online", b"0")
    for gw in pair:
        wait_for(
            lambda gw=gw: (
                {
                    (e.elevator_id, e.kind, e.ended_at is None)
                    for e in gw.store.episodes(start, start + timedelta(hours=1))
                    if e.elevator_id.startswith(prefix)
                }
                == {(serviced, "maintenance", False), (dark, "offline", True)}
            ),
            timeout=20,
        )
    clock.advance(25 * 3600)  # offline for 25 hours, with no notice

    answers = [_lists(gw, prefix) for gw in pair]
    assert answers[0] == answers[1]
    lists = answers[0]
    assert {r["elevator_id"] for r in lists["maintenance-overdue"]} == {dark, never}
    assert [(r["elevator_id"], r["reason"]) for r in lists["outages-without-notice"]] == [
        (dark, "offline")
    ]
    assert [(r["elevator_id"], r["online_at"]) for r in lists["offline-stretches"]] == [
        (dark, None)
    ]
    assert [r["elevator_id"] for r in lists["without-telemetry"]] == [never]

"""The alarm path never waits on slow neighbours (issue 21): a hung time-series store holds
neither detection, nor the alert, nor a dispatcher's click.

Real Mosquitto and VictoriaMetrics; the store "hangs" behind a proxy that accepts
connections and never answers. The gateway runs on a clock the test moves by hand; the
bounds below (10 s) say "not blocked", far below the store's 60 s timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.app import Gateway
from gateway.clock import FixedClock
from gateway.settings import Settings
from tests.conftest import Broker, Device, Subscriber, VictoriaMetrics, status_frame, wait_for
from tests.services import StallingProxy, database_away, make_pg_database, paused_backends

TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}
TOKEN = "alarm-path-dispatcher-token-0001"

pytestmark = pytest.mark.timeout(120)


def _alerts(sub: Subscriber, elevator_id: str) -> list[dict[str, Any]]:
    found = (json.loads(p) for _t, p in sub.messages)
    return [a for a in found if a["elevator_id"] == elevator_id and a["kind"] == "entrapment"]


def test_alerts_and_actions_go_on_while_the_store_hangs_and_its_points_come_later(
    gateway_settings: Callable[..., Settings],
    device: Device,
    broker: Broker,
    vm: VictoriaMetrics,
    prefix: str,
) -> None:
    proxy = StallingProxy(vm.port, hanging=True)
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(
        tsdb_url=proxy.url, tsdb_timeout_s=60, tick_interval_s=0.02, tokens=f"dispatcher:{TOKEN}"
    )
    api = f"http://127.0.0.1:{settings.http_port}/api"
    cars = [f"{prefix}-{n}" for n in range(5)]
    with Gateway(settings, clock) as gw:
        assert gw.session.wait_connected(10)
        # One car after the other, each frame a batch of its own: the first batch's write
        # hangs, and the frames after it are processed all the same.
        for eid in cars:
            device.publish(f"elevators/{eid}/status", status_frame(eid, 0, **TRAPPED))
            wait_for(lambda eid=eid: gw.incidents.last_frame(eid), timeout=10)
        assert proxy.held  # the store has the first write and does not answer it
        clock.advance(21)
        for eid in cars:
            wait_for(lambda eid=eid: _alerts(alerts, eid), timeout=10)
        # A dispatcher's click answers while the store still hangs.
        clock.advance(1)  # (the acknowledgement's point a second after the opening's)
        incident_id = _alerts(alerts, cars[0])[0]["incident_id"]
        r = httpx.post(
            f"{api}/incidents/{incident_id}/acknowledge",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"by": "ana"},
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["state"] == "acknowledged"
        assert proxy.held

        # The store comes back: the held write fails, the spool takes over and replays, and
        # the `incident` series has every change, telemetry's frames with it.
        proxy.release()
        wait_for(lambda: vm.count("elevator_status_seq", prefix) == len(cars), timeout=30)
        wait_for(lambda: vm.count("incident_breached", prefix) == len(cars) + 1, timeout=30)
    proxy.close()
    alerts.close()


def test_a_paused_database_delays_the_alert_by_the_pause_and_loses_nothing(
    gateway_settings: Callable[..., Settings], device: Device, broker: Broker, prefix: str
) -> None:
    """A PostgreSQL hiccup: every backend of the gateway's database is stopped (SIGSTOP; the
    machine's server itself is shared and never restarted here) for 3 s while an entrapment's
    hold completes. The alert comes once the database answers again, once, with the time the
    hold completed; the incident is stored once."""
    db = make_pg_database()
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(store_url=db.url, tsdb_url="", tick_interval_s=0.02)
    eid = f"{prefix}-pg"
    try:
        with Gateway(settings, clock) as gw:
            assert gw.session.wait_connected(10)
            device.publish(f"elevators/{eid}/status", status_frame(eid, 0, **TRAPPED))
            wait_for(lambda: gw.incidents.last_frame(eid))
            with paused_backends(db.name) as paused:
                assert paused
                # The hold completes once the database is paused, not before (a tick would
                # store the incident meanwhile).
                due_at = clock.advance(21) - timedelta(seconds=1)
                time.sleep(3)
                assert _alerts(alerts, eid) == []  # the incident is not stored: no alert yet
            [alert] = wait_for(lambda: _alerts(alerts, eid), timeout=10)
            assert datetime.fromisoformat(alert["at"]) == due_at
            time.sleep(0.5)  # nothing more comes
            assert len(_alerts(alerts, eid)) == 1
            assert [i.kind for i in gw.store.list_incidents(elevator_id=eid)] == ["entrapment"]
    finally:
        alerts.close()
        db.drop()


def test_an_alert_raised_while_the_database_is_away_is_stored_and_sent_once_it_is_back(
    gateway_settings: Callable[..., Settings], device: Device, broker: Broker, prefix: str
) -> None:
    """A failover: the gateway's connections are cut and new ones refused for 3 s while an
    entrapment's hold completes. The rules raise that alert once; it waits for the database
    and goes out, once, when it is back."""
    db = make_pg_database()
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(store_url=db.url, tsdb_url="", tick_interval_s=0.02)
    eid = f"{prefix}-pg"
    try:
        with Gateway(settings, clock) as gw:
            assert gw.session.wait_connected(10)
            device.publish(f"elevators/{eid}/status", status_frame(eid, 0, **TRAPPED))
            wait_for(lambda: gw.incidents.last_frame(eid))
            with database_away(db.name):
                due_at = clock.advance(21) - timedelta(seconds=1)
                wait_for(lambda: REGISTRY.get_sample_value("gateway_alerts_waiting_for_store"))
                time.sleep(2)
                assert _alerts(alerts, eid) == []
            [alert] = wait_for(lambda: _alerts(alerts, eid), timeout=10)
            assert datetime.fromisoformat(alert["at"]) == due_at
            time.sleep(0.5)  # nothing more comes
            assert len(_alerts(alerts, eid)) == 1
            assert [i.kind for i in gw.store.list_incidents(elevator_id=eid)] == ["entrapment"]
    finally:
        alerts.close()
        db.drop()


def test_a_malformed_frame_during_a_database_pause_holds_no_detection(
    gateway_settings: Callable[..., Settings], device: Device, broker: Broker, prefix: str
) -> None:
    """A device's broken frame is dead-lettered in the relational store. While the database
    is paused, that must wait on the writer's thread, not the pipeline's: the cars' frames
    after it are still processed and a trapped car's alert is raised meanwhile (it waits for
    the database only to be stored). Afterwards the alert goes out once and the broken frame
    is in the dead letter."""
    db = make_pg_database()
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(
        store_url=db.url, tsdb_url="", tick_interval_s=0.02, flush_interval_s=0.05
    )
    eid, broken = f"{prefix}-trapped", f"{prefix}-broken"
    try:
        with Gateway(settings, clock) as gw:
            assert gw.session.wait_connected(10)
            with paused_backends(db.name):
                device.publish(f"elevators/{broken}/status", b'{"v": 1, "seq": ')
                time.sleep(0.5)  # batches are cut meanwhile: the rejection with one of them
                cars = [f"{prefix}-{n}" for n in range(20)]
                for car in cars:
                    device.publish(f"elevators/{car}/status", status_frame(car, 0))
                device.publish(f"elevators/{eid}/status", status_frame(eid, 0, **TRAPPED))
                wait_for(lambda: gw.rules.last_status_at(eid), timeout=10)
                assert all(gw.rules.last_status_at(car) for car in cars)
                due_at = clock.advance(21) - timedelta(seconds=1)
                wait_for(
                    lambda: REGISTRY.get_sample_value("gateway_alerts_waiting_for_store"),
                    timeout=10,
                )
                assert _alerts(alerts, eid) == []  # raised, and stored once the database is back
            [alert] = wait_for(lambda: _alerts(alerts, eid), timeout=10)
            assert datetime.fromisoformat(alert["at"]) == due_at
            [letter] = wait_for(lambda: gw.store.dead_letters(elevator_id=broken), timeout=10)
            assert letter["reason"] == "bad_json"
            time.sleep(0.5)
            assert len(_alerts(alerts, eid)) == 1
    finally:
        alerts.close()
        db.drop()

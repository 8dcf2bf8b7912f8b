"""The alarm path never waits on slow neighbours (issue 21): a hung time-series store holds
neither detection, nor the alert, nor a dispatcher's click.

Real Mosquitto and VictoriaMetrics; the store "hangs" behind a proxy that accepts
connections and never answers. The gateway runs on a clock the test moves by hand; the
bounds below (10 s) say "not blocked", far below the store's 60 s timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.clock import FixedClock
from gateway.settings import Settings
from tests.conftest import Broker, Device, Subscriber, VictoriaMetrics, status_frame, wait_for
from tests.services import StallingProxy

TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}

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
        tsdb_url=proxy.url, tsdb_timeout_s=60, tick_interval_s=0.02, tokens="dispatcher:tok"
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
            headers={"Authorization": "Bearer tok"},
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

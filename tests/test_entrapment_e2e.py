"""Detection end to end on real Mosquitto: frames in, one alert on dispatch/alerts out.

The gateway runs on a clock the test moves by hand, so the 20 s hold is exact and the test
never waits for it; every time asserted below is the gateway's own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from gateway.app import Gateway
from gateway.clock import FixedClock
from tests.conftest import Device, Subscriber, status_frame, wait_for

TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}
TICKS = 0.3  # real seconds: many ticks of the worker (every 20 ms) after the clock moved


def _alerts(sub: Subscriber, elevator_id: str, kind: str) -> list[dict[str, object]]:
    found = (json.loads(p) for _t, p in sub.messages)
    return [a for a in found if a["elevator_id"] == elevator_id and a["kind"] == kind]


def _delivery() -> tuple[float, float]:
    """gateway_alert_delivery_seconds: (count, sum)."""
    name = "gateway_alert_delivery_seconds"
    count = REGISTRY.get_sample_value(f"{name}_count") or 0.0
    return count, REGISTRY.get_sample_value(f"{name}_sum") or 0.0


def test_trapped_between_floors_alerts_once_within_hold_plus_one_second(
    gateway_settings, device: Device, broker, prefix: str
) -> None:
    trapped, technician = f"{prefix}-trap", f"{prefix}-tech"
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))
    with Gateway(gateway_settings(tsdb_url="", tick_interval_s=0.02), clock) as gw:
        assert gw.session.wait_connected(10)
        # The car stops between floors with a passenger, sends one frame and falls silent.
        device.publish(f"elevators/{trapped}/status", status_frame(trapped, 0, **TRAPPED))
        # The same situation with a technician in charge.
        device.publish(
            f"elevators/{technician}/status",
            status_frame(technician, 0, **TRAPPED, mode="inspection"),
        )
        wait_for(lambda: gw.incidents.last_frame(technician) and gw.incidents.last_frame(trapped))
        sent_at = clock.now()
        clock.advance(19.9)
        time.sleep(TICKS)
        assert _alerts(alerts, trapped, "entrapment") == []  # not before the hold
        delivered_before = _delivery()
        clock.advance(1.1)
        wait_for(lambda: _alerts(alerts, trapped, "entrapment"))
        # Operators see alert latency on /metrics: acknowledged 1 s (on this clock) after due.
        wait_for(lambda: _delivery()[0] == delivered_before[0] + 1)
        # (A difference of float sums: exact to far below the clock's µs, not to the bit.)
        assert _delivery()[1] - delivered_before[1] == pytest.approx(1.0, abs=1e-9)
        # 40 s more: both cars fall silent (offline, a positive sign the clock was read), and
        # nothing else may fire for the entrapment.
        clock.advance(40)
        wait_for(lambda: _alerts(alerts, technician, "offline"))
        time.sleep(TICKS)

        [alert] = _alerts(alerts, trapped, "entrapment")
        assert (alert["severity"], alert["rule"]) == ("critical", "trapped_between_floors")
        waited = (datetime.fromisoformat(str(alert["at"])) - sent_at).total_seconds()
        assert waited == 20.0
        incident = gw.store.get_incident(str(alert["incident_id"]))
        assert incident is not None and incident.source == "telemetry"
        assert (incident.deadline_at - incident.opened_at).total_seconds() == 1800
        [first] = gw.store.incident_frames(incident.id)  # the black box: the one frame sent
        assert first["received_at"] == sent_at

        assert _alerts(alerts, technician, "entrapment") == []
        kinds = {i.kind for i in gw.store.list_incidents(elevator_id=technician, state="all")}
        assert "entrapment" not in kinds
    alerts.close()

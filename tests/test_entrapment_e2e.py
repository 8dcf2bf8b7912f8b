"""Detection end to end on real Mosquitto: frames in, one alert on dispatch/alerts out.

The gateway runs on a scaled clock (10x) so the default 20 s hold passes in 2 s of test time;
every time asserted below is the gateway's own (scaled) time, never the test's wall clock.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from gateway.app import Gateway
from gateway.clock import ScaledClock
from tests.conftest import Device, Subscriber, status_frame, wait_for

SPEED = 10.0
TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}


def _entrapment_alerts(sub: Subscriber, elevator_id: str) -> list[dict[str, object]]:
    found = (json.loads(p) for _t, p in sub.messages)
    return [a for a in found if a["elevator_id"] == elevator_id and a["kind"] == "entrapment"]


def test_trapped_between_floors_alerts_once_within_hold_plus_one_second(
    gateway_settings, device: Device, broker, prefix: str
) -> None:
    trapped, technician = f"{prefix}-trap", f"{prefix}-tech"
    alerts = Subscriber(broker.url, "dispatch/alerts")
    with Gateway(gateway_settings(tsdb_url="", tick_interval_s=0.02), ScaledClock(SPEED)) as gw:
        assert gw.session.wait_connected(10)
        # The car stops between floors with a passenger, sends one frame and falls silent.
        device.publish(f"elevators/{trapped}/status", status_frame(trapped, 0, **TRAPPED))
        # The same situation with a technician in charge.
        device.publish(
            f"elevators/{technician}/status",
            status_frame(technician, 0, **TRAPPED, mode="inspection"),
        )
        wait_for(lambda: _entrapment_alerts(alerts, trapped), timeout=20)
        time.sleep(40 / SPEED)  # 40 s more of gateway time: nothing else may fire

        [alert] = _entrapment_alerts(alerts, trapped)
        assert (alert["kind"], alert["severity"], alert["rule"]) == (
            "entrapment",
            "critical",
            "trapped_between_floors",
        )
        incident = gw.store.get_incident(str(alert["incident_id"]))
        assert incident is not None and incident.source == "telemetry"
        [first] = gw.store.incident_frames(incident.id)  # the black box: the one frame sent
        waited = (datetime.fromisoformat(str(alert["at"])) - first["received_at"]).total_seconds()
        assert 20 <= waited <= 21, waited
        assert (incident.deadline_at - incident.opened_at).total_seconds() == 1800

        assert _entrapment_alerts(alerts, technician) == []
        # (It does get an `offline` incident: it fell silent, and silence is not alive.)
        kinds = {i.kind for i in gw.store.list_incidents(elevator_id=technician, state="all")}
        assert "entrapment" not in kinds
    alerts.close()

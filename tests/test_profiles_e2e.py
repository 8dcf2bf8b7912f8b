"""Device profiles end to end on real Mosquitto and VictoriaMetrics: `lift-numeric` terminals
publish on `lift/{id}/data`, and the gateway sees contract frames and events."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import Gateway
from gateway.clock import FixedClock
from tests.conftest import Device, Subscriber, VictoriaMetrics, wait_for
from tests.gateways import healthy, start_gateway

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Device times within VictoriaMetrics' export range (up to now) after the clock moved on.
PAST = datetime.now(UTC) - timedelta(minutes=5)
TICKS = 0.3  # real seconds: many ticks of the worker (every 20 ms) after the clock moved
IDLE = {"floor": 3, "runState": 0, "direction": 0, "doorState": 0, "levelState": 1,
        "hasPerson": 0, "powerSource": 0, "serviceMode": 0, "alarmButton": 0, "speed": 0,
        "load": 0, "safetyCircuit": 0}  # fmt: skip
TRAPPED = IDLE | {"floor": 7, "levelState": 0, "hasPerson": 1, "load": 9}
DOOR_OPEN_RUNNING = IDLE | {"runState": 1, "direction": 1, "doorState": 1, "levelState": 0,
                            "hasPerson": 1, "speed": 1.0}  # fmt: skip


def lift(eid: str, seq: int, status: dict[str, Any], faults: list[int], at: datetime) -> bytes:
    return json.dumps(
        {
            "regCode": eid,
            "seqNo": seq,
            "bootId": 7,
            "time": at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            "status": status,
            "faults": faults,
        }
    ).encode()


def events(vm: VictoriaMetrics, eid: str, code: str, state: str) -> int:
    selector = (
        f'{{__name__="elevator_event_seq",elevator_id="{eid}",code="{code}",state="{state}"}}'
    )
    return sum(len(s["values"]) for s in vm.export(selector))


def test_a_car_trapped_between_floors_opens_exactly_one_entrapment_incident(
    gateway_settings, device: Device, vm: VictoriaMetrics, broker, prefix: str
) -> None:
    eid = f"{prefix}-trap"
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(PAST)
    with Gateway(gateway_settings(tick_interval_s=0.02), clock) as gw:
        assert gw.session.wait_connected(10)
        device.publish(f"lift/{eid}/data", lift(eid, 0, TRAPPED, [], clock.now()))
        wait_for(lambda: gw.incidents.last_frame(eid))
        last = gw.incidents.last_frame(eid)
        assert last is not None
        assert {k: last["body"][k] for k in ("moving", "door", "door_zone", "occupied")} == {
            "moving": False, "door": "closed", "door_zone": False, "occupied": True,
        }  # fmt: skip
        clock.advance(21)  # the status rule's hold (20 s) is over: it fires
        wait_for(lambda: [a for _t, a in alerts.messages if eid.encode() in a])
        device.publish(f"lift/{eid}/data", lift(eid, 1, TRAPPED, [8], clock.now()))
        wait_for(lambda: events(vm, eid, "ENTRAPMENT", "raised") == 1)
        clock.advance(5)
        time.sleep(TICKS)
        incidents = gw.store.list_incidents(elevator_id=eid, state="all")
        assert [(i.kind, i.state) for i in incidents] == [("entrapment", "open")]
        assert incidents[0].rule == "trapped_between_floors"
        stored = vm.count("elevator_status_seq", eid)
        assert stored == 2
    alerts.close()


def test_faults_4_then_none_raise_and_clear_door_open_while_moving(
    gateway_settings, device: Device, vm: VictoriaMetrics, prefix: str
) -> None:
    eid = f"{prefix}-door"
    clock = FixedClock(PAST)
    with Gateway(gateway_settings(tick_interval_s=0.02), clock) as gw:
        assert gw.session.wait_connected(10)
        device.publish(f"lift/{eid}/data", lift(eid, 0, DOOR_OPEN_RUNNING, [4], clock.now()))
        wait_for(lambda: events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "raised") == 1)
        clock.advance(2)  # the rule's 1 s debounce
        wait_for(lambda: gw.store.list_incidents(elevator_id=eid, state="all"))
        clock.advance(1)
        device.publish(f"lift/{eid}/data", lift(eid, 1, IDLE, [], clock.now()))
        wait_for(lambda: events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "cleared") == 1)
        [incident] = gw.store.list_incidents(elevator_id=eid, state="all")
        assert (incident.kind, incident.severity) == ("DOOR_OPEN_WHILE_MOVING", "critical")
        assert events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "raised") == 1


def test_a_payload_missing_a_path_is_dead_lettered_naming_it(
    gateway_settings, device: Device, broker, prefix: str
) -> None:
    eid = f"{prefix}-nofloor"
    published = Subscriber(broker.url, "gateway/deadletter")
    with Gateway(gateway_settings()) as gw:
        assert gw.session.wait_connected(10)
        status = {k: v for k, v in IDLE.items() if k != "floor"}
        device.publish(f"lift/{eid}/data", lift(eid, 0, status, [], datetime.now(UTC)))
        wait_for(lambda: gw.store.dead_letter_count() >= 1)
        [dead] = [d for d in gw.store.dead_letters() if d["elevator_id"] == eid]
        assert (dead["reason"], dead["detail"], dead["topic"]) == (
            "missing_field", "profile lift-numeric: status.floor: missing", f"lift/{eid}/data",
        )  # fmt: skip
        wait_for(lambda: published.messages)
        message = json.loads(published.messages[0][1])
        assert message["detail"] == "profile lift-numeric: status.floor: missing"
        assert gw.incidents.last_frame(eid) is None
    published.close()


@pytest.mark.parametrize("mqtt_client", ["libmosquitto", "paho"])
def test_a_restart_with_a_fault_active_does_not_raise_it_again(
    gateway_env: dict[str, str],
    device: Device,
    vm: VictoriaMetrics,
    prefix: str,
    tmp_path: Path,
    mqtt_client: str,
) -> None:
    """kill -9 after the fault was raised; the next gateway on the same spool directory
    still knows it is active."""
    eid = f"{prefix}-restart"
    env = gateway_env | {"GATEWAY_MQTT_CLIENT": mqtt_client}
    saved = Path(env["GATEWAY_SPOOL_DIR"]) / "profile_faults.json"
    gw = start_gateway(env, tmp_path / "gw1.log")
    try:
        wait_for(lambda: healthy(env), timeout=30)
        device.publish(f"lift/{eid}/data", lift(eid, 0, DOOR_OPEN_RUNNING, [4], datetime.now(UTC)))
        wait_for(lambda: events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "raised") == 1)
        wait_for(lambda: saved.exists() and eid in saved.read_text())
    finally:
        gw.kill()
        gw.wait()
    # Sent while no gateway runs: the broker keeps them for the persistent session.
    for seq, faults in ((1, [4]), (2, [4, 13]), (3, [])):
        device.publish(
            f"lift/{eid}/data", lift(eid, seq, DOOR_OPEN_RUNNING, faults, datetime.now(UTC))
        )
    gw = start_gateway(env, tmp_path / "gw2.log")
    try:
        wait_for(lambda: events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "cleared") == 1, timeout=30)
        assert events(vm, eid, "DOOR_OPEN_WHILE_MOVING", "raised") == 1
        assert events(vm, eid, "DOOR_LOCK_FAULT", "raised") == 1
        assert events(vm, eid, "DOOR_LOCK_FAULT", "cleared") == 1
        # Every frame stored (the first may be twice: read again from the journal, after
        # kill -9), its fault raised only once.
        assert set(vm.values("elevator_status_seq", eid)[eid]) == {0, 1, 2, 3}
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0

"""The simulator and the load generator against a real Mosquitto (conftest's `broker`)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.clock import FixedClock
from gateway.frames import Frame, decode
from simulators.fleet import Fleet
from simulators.loadgen import run_load
from simulators.mqtt import MqttPublisher
from simulators.scenario import parse_scenario
from tests.conftest import Broker, Subscriber, wait_for

START = datetime.fromisoformat("2026-11-27T18:00:00+08:00")


def _fleet(broker: Broker, prefix: str, per_car: bool) -> Fleet:
    scenario = parse_scenario(
        {"seed": 2, "elevators": [{"prefix": prefix, "count": 3, "building": "residential"}]}
    )
    return Fleet(scenario, FixedClock(START), MqttPublisher(broker.url, per_car=per_car))


def _online(broker: Broker, prefix: str) -> dict[str, bytes]:
    """The retained `online` values a new subscriber is handed."""
    sub = Subscriber(broker.url, "elevators/+/online")

    def mine() -> dict[str, bytes]:
        with sub._lock:
            ids = (topic.split("/")[1] for topic, _ in sub.messages)
            return {
                e: p for e, (_, p) in zip(ids, sub.messages, strict=True) if e.startswith(prefix)
            }

    try:
        return wait_for(lambda: len(mine()) >= 3 and mine(), timeout=5)
    finally:
        sub.close()


def test_fleet_frames_arrive_and_online_is_retained(broker: Broker, prefix: str) -> None:
    sub = Subscriber(broker.url, "elevators/+/+")
    fleet = _fleet(broker, prefix, per_car=False)
    fleet.run(300)
    sent = fleet.stats.frames["status"] + fleet.stats.frames["event"]
    assert sent > 30

    def mine() -> list[tuple[str, bytes]]:
        with sub._lock:
            return [m for m in sub.messages if m[0].split("/")[1].startswith(prefix)]

    wait_for(lambda: len([m for m in mine() if not m[0].endswith("online")]) >= sent)
    for topic, payload in mine():
        assert isinstance(decode(topic, payload, START), Frame)
    assert _online(broker, prefix) == dict.fromkeys(fleet.elevator_ids, b"1")
    fleet.stop()
    sub.close()
    assert _online(broker, prefix) == dict.fromkeys(fleet.elevator_ids, b"0")


def test_one_connection_per_car_has_its_own_last_will(broker: Broker, prefix: str) -> None:
    fleet = _fleet(broker, prefix, per_car=True)
    fleet.open()
    sub = Subscriber(broker.url, f"elevators/{prefix}0001/online")
    try:
        wait_for(lambda: sub.messages == [(f"elevators/{prefix}0001/online", b"1")])
        # The connection drops without a DISCONNECT: the broker publishes the will, and the
        # car announces itself again when paho reconnects.
        connection = fleet.publisher._by_car[f"{prefix}0001"]  # type: ignore[attr-defined]
        connection.client.socket().close()
        wait_for(lambda: [p for _, p in sub.messages][1:3] == [b"0", b"1"], timeout=15)
    finally:
        sub.close()
        fleet.stop()


def test_load_generator_reports_what_the_broker_acknowledged(broker: Broker) -> None:
    sub = Subscriber(broker.url, "elevators/LOAD000000/status")
    report = run_load(broker.url, rate=500, elevators=4, duration_s=1.0, processes=2)
    assert report.acked == report.sent > 100
    assert 200 < report.rate < 1000
    wait_for(lambda: len(sub.messages) >= report.sent // 4 - 1)
    # The load generator stamps frames with the wall clock: decoded as received now.
    received_at = datetime.now(UTC)
    for topic, payload in sub.messages:
        assert isinstance(decode(topic, payload, received_at), Frame)
    seqs = [int(payload.split(b'"seq":')[1].split(b",")[0]) for _, payload in sub.messages]
    assert seqs == list(range(len(seqs)))
    sub.close()

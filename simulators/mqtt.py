"""Where the fleet's messages go: a `Publisher`, on MQTT or into a list for tests.

The `online` topic and its last will belong to a connection, not to a car: MQTT gives each
connection one will. With one connection per car (`per_car=True`, for small fleets) every
car has its own will of `"0"`, exactly as a real controller. When many cars share a
connection (the default, for large fleets), the publisher publishes every car's retained
`"1"` itself on each (re)connect and `"0"` on a clean stop; if the simulator dies, those
cars stay `"1"` until the next run. The shared connection's own will goes to
`elevator-sim/{client_id}/online`, outside the contract's topics.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest import BrokerAddress  # one parser of the broker URL for both sides

QOS = 1
MAX_PENDING = 20_000  # unacknowledged messages per connection before publish() waits


class Publisher(Protocol):
    def open(self, elevator_ids: Sequence[str]) -> None:
        """Connect and announce every car `online`."""
        ...

    def publish(
        self, elevator_id: str, topic: str, payload: bytes, retain: bool = False
    ) -> None: ...

    def close(self) -> None:
        """Announce every car offline and disconnect."""
        ...


class ListPublisher:
    """Keeps every message in order, for tests and reproducibility checks."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._ids: Sequence[str] = ()

    def open(self, elevator_ids: Sequence[str]) -> None:
        self._ids = elevator_ids
        self.messages.extend((f"elevators/{e}/online", b"1", True) for e in elevator_ids)

    def publish(self, elevator_id: str, topic: str, payload: bytes, retain: bool = False) -> None:
        self.messages.append((topic, payload, retain))

    def close(self) -> None:
        self.messages.extend((f"elevators/{e}/online", b"0", True) for e in self._ids)


def make_client(address: BrokerAddress, client_id: str) -> paho.Client:
    """A paho client for `address`, not yet connected."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.max_inflight_messages_set(1000)
    return client


def _online_topic(elevator_id: str) -> str:
    return f"elevators/{elevator_id}/online"


class _Connection:
    """One paho client and the cars it speaks for."""

    def __init__(
        self, address: BrokerAddress, client_id: str, cars: Sequence[str], will_topic: str
    ) -> None:
        self.cars = cars
        self.client = make_client(address, client_id)
        self.client.will_set(will_topic, b"0", qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self._pending = 0
        self._cond = threading.Condition()
        self._address = address

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        # Also after an automatic reconnect: the broker has published the will meanwhile.
        with self._cond:
            self._pending += len(self.cars)
        for car in self.cars:
            client.publish(_online_topic(car), b"1", qos=QOS, retain=True)
        self.connected.set()

    def _on_publish(self, *_a: Any) -> None:
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def start(self) -> None:
        self.client.connect_async(self._address.host, self._address.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        # Backpressure: wait for the broker rather than buffer without bound.
        with self._cond:
            self._cond.wait_for(lambda: self._pending < MAX_PENDING, timeout=30)
            self._pending += 1
        self.client.publish(topic, payload, qos=QOS, retain=retain)

    def stop(self) -> None:
        last = None
        for car in self.cars:
            last = self.client.publish(_online_topic(car), b"0", qos=QOS, retain=True)
        if last is not None and self.connected.is_set():
            last.wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()


class MqttPublisher:
    """Publishes at QoS 1 over `connections` shared clients, or one client per car."""

    def __init__(
        self,
        url: str,
        client_id: str = "elevator-sim",
        connections: int = 1,
        per_car: bool = False,
        connect_timeout_s: float = 15.0,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.address = BrokerAddress.parse(url)
        self.client_id = f"{client_id}-{uuid.uuid4().hex[:6]}"
        self.connections = connections
        self.per_car = per_car
        self._timeout = connect_timeout_s
        self._conns: list[_Connection] = []
        self._by_car: dict[str, _Connection] = {}

    def open(self, elevator_ids: Sequence[str]) -> None:
        if self.per_car:
            self._conns = [
                _Connection(self.address, f"{self.client_id}-{e}", [e], _online_topic(e))
                for e in elevator_ids
            ]
        else:
            n = min(self.connections, max(1, len(elevator_ids)))
            self._conns = [
                _Connection(
                    self.address,
                    f"{self.client_id}-{i}",
                    elevator_ids[i::n],
                    f"elevator-sim/{self.client_id}-{i}/online",
                )
                for i in range(n)
            ]
        for conn in self._conns:
            self._by_car.update(dict.fromkeys(conn.cars, conn))
            conn.start()
        for conn in self._conns:
            if not conn.connected.wait(self._timeout):
                self.close()
                raise ConnectionError(f"no connection to the broker at {self.address.host}")

    def publish(self, elevator_id: str, topic: str, payload: bytes, retain: bool = False) -> None:
        self._by_car[elevator_id].publish(topic, payload, retain)

    def close(self) -> None:
        for conn in self._conns:
            conn.stop()
        self._conns = []

"""Real services for the tests: Mosquitto and VictoriaMetrics processes on free ports.

Each fixture starts its own process in a temporary directory (never one that happens to be
running) and stops it afterwards. `.ci/run` installs the binaries; a missing one fails.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.app import Gateway
from gateway.rules.spec import CASE_STATUS_DEFAULTS
from gateway.settings import Settings, load_settings
from gateway.store import Store, open_store
from tests.services import (
    Broker,
    VictoriaMetrics,
    free_port,
    make_broker,
    make_pg_database,
    make_vm,
    wait_for,
)

__all__ = ["Broker", "VictoriaMetrics", "free_port", "wait_for"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto shared by the tests of one module that do not restart it. Per module, so
    retained messages (online states, incident states) of one module never reach another's
    gateways: a retained `online` of an elevator that never sends again is, rightly, an
    offline incident after 30 s."""
    b = make_broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own, to kill and restart."""
    b = make_broker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    v = make_vm(tmp_path_factory.mktemp("vm"))
    v.start()
    yield v
    v.stop()


@pytest.fixture
def own_vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    v = make_vm(tmp_path / "vm")
    v.start()
    yield v
    v.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped afterwards."""
    db = make_pg_database()
    yield db.url
    db.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL of each backend in turn (PostgreSQL: the session's database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on each backend in turn."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def prefix() -> str:
    """A unique elevator-id prefix, so tests sharing a broker and store never see each other."""
    return "T" + uuid.uuid4().hex[:8]


@pytest.fixture
def gateway_settings(
    tmp_path: Path, broker: Broker, vm: VictoriaMetrics
) -> Callable[..., Settings]:
    """Settings for a gateway on this test's services, in this test's directory."""
    client_id = "gw-" + uuid.uuid4().hex[:8]

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mqtt_url": broker.url,
            "mqtt_client_id": client_id,
            "tsdb_url": vm.url,
            "store_url": f"sqlite:///{tmp_path / 'gateway.db'}",
            "spool_dir": tmp_path / "spool",
            "http_port": free_port(),
            "flush_interval_s": 0.05,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


class Device:
    """A test device: a paho client that publishes frames and waits for the broker's ack."""

    def __init__(self, url: str, client_id: str | None = None) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or "dev-" + uuid.uuid4().hex[:8]
        )
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Stream:
    """A fleet reporting steadily: a thread publishes status frames at `rate` per second,
    round-robin over `elevators` (seq 0, 1, ... each), at QoS 1 without waiting. `fields`
    gives some elevators a state of their own (a trapped car). Across a broker restart paho
    reconnects and resends whatever was not acknowledged. Acknowledgements are told apart by
    message id, so one stream carries fewer than 65535 frames."""

    def __init__(
        self,
        url: str,
        elevators: list[str],
        rate: float,
        fields: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.device = Device(url)
        self.device.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._elevators = elevators
        self._rate = rate
        self._fields = fields or {}
        self._sent: list[tuple[str, int, int]] = []  # elevator, seq, message id
        # paho's MQTTMessageInfo raises for a message first queued while disconnected, even
        # once it is resent and acknowledged: count the PUBACKs themselves.
        self._acked: set[int] = set()
        self.device.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.wait(0.02):
            for _ in range(int((time.monotonic() - started) * self._rate) - n):
                eid, seq = self._elevators[n % len(self._elevators)], n // len(self._elevators)
                payload = status_frame(eid, seq, **self._fields.get(eid, {}))
                info = self.device.client.publish(f"elevators/{eid}/status", payload, qos=1)
                self._sent.append((eid, seq, info.mid))
                n += 1
                assert n < 65535, "message ids would repeat"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop publishing; wait (bounded) for the broker to acknowledge what is in flight."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.acked_count() < self.sent:
            time.sleep(0.05)
        self.device.close()

    @property
    def sent(self) -> int:
        return len(self._sent)

    def acked_count(self) -> int:
        return len(self._acked)

    def acked(self) -> dict[str, set[int]]:
        """The seqs the broker acknowledged (PUBACK), per elevator."""
        out: dict[str, set[int]] = {}
        for eid, seq, mid in self._sent:
            if mid in self._acked:
                out.setdefault(eid, set()).add(seq)
        return out


def publish_all(url: str, messages: Iterable[tuple[str, bytes]], window: int = 2000) -> int:
    """Publish at QoS 1 as fast as the broker acknowledges; returns how many it did. No
    network thread: paho's would fight this one for the GIL (see simulators/loadgen.py)."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="blast-" + uuid.uuid4().hex[:8])
    client.max_inflight_messages_set(window)
    acked = 0

    def on_publish(*_a: object) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect(host, int(port))
    sent = 0
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
        sent += 1
        if sent % 200 == 0:
            client.loop(0)
            while sent - acked > window:
                client.loop(0.01)
    deadline = time.monotonic() + 30
    while acked < sent and time.monotonic() < deadline:
        client.loop(0.01)
    client.disconnect()
    return acked


@pytest.fixture
def device(broker: Broker) -> Iterator[Device]:
    d = Device(broker.url)
    yield d
    d.close()


class Subscriber:
    """Collects what arrives on a topic filter."""

    def __init__(self, url: str, topic: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect(host, int(port))
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def status_frame(elevator_id: str, seq: int, boot: int = 1, **fields: Any) -> bytes:
    """A healthy idle car at floor 3 (the rule cases' defaults), changed by `fields`."""
    body: dict[str, Any] = {
        "v": 1,
        "elevator_id": elevator_id,
        "seq": seq,
        "boot": boot,
        "ts": datetime.now(UTC).isoformat(),
        **CASE_STATUS_DEFAULTS,
        "floor": 3,
    }
    body.update(fields)
    return json.dumps(body).encode()


def gateway_up(gw: Gateway) -> bool:
    """The in-process gateway's HTTP server answers its health check."""
    try:
        return httpx.get(f"http://127.0.0.1:{gw.settings.http_port}/api/health").status_code == 200
    except httpx.HTTPError:
        return False


def event_frame(
    elevator_id: str, seq: int, code: str, state: str = "raised", boot: int = 1, **fields: Any
) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "elevator_id": elevator_id,
        "seq": seq,
        "boot": boot,
        "ts": datetime.now(UTC).isoformat(),
        "code": code,
        "state": state,
    }
    body.update(fields)
    return json.dumps(body).encode()


@pytest.fixture
def gateway_env(tmp_path: Path, broker: Broker, vm: VictoriaMetrics) -> dict[str, str]:
    """Environment for an `elevator-gateway run` subprocess on this test's services."""
    env = dict(os.environ)
    env.update(
        # this checkout's code, whatever an editable install elsewhere points at
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
        GATEWAY_MQTT_URL=broker.url,
        GATEWAY_MQTT_CLIENT_ID="gw-" + uuid.uuid4().hex[:8],
        GATEWAY_TSDB_URL=vm.url,
        GATEWAY_STORE_URL=f"sqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_SPOOL_DIR=str(tmp_path / "spool"),
        GATEWAY_HTTP_PORT=str(free_port()),
        GATEWAY_FLUSH_INTERVAL_S="0.05",
    )
    return env

"""Real services for the tests: Mosquitto and VictoriaMetrics processes on free ports.

Each fixture starts its own process in a temporary directory (never one that happens to be
running) and stops it afterwards. `.ci/run` installs the binaries; a missing one fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open: {log.read_text()[-2000:]}")


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed: run .ci/run (it installs it)")
    return path


@dataclass
class ServiceProcess:
    """A service we own: restartable on the same port and data directory."""

    argv: list[str]
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "service.log"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        _wait_port(self.port, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Broker(ServiceProcess):
    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass
class VictoriaMetrics(ServiceProcess):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching `match` (a PromQL series selector)."""
        # Make what was just written searchable now rather than after VM's buffering delay.
        httpx.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=10)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def count(self, metric: str, elevator_prefix: str) -> int:
        series = self.export(f'{{__name__="{metric}",elevator_id=~"{elevator_prefix}.*"}}')
        return sum(len(s["values"]) for s in series)


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
# Mosquitto's defaults drop data for a fleet: 100 queued messages per offline client.
max_queued_messages 1000000
max_queued_bytes 0
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


def make_broker(tmp: Path) -> Broker:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, dir=tmp))
    return Broker([_binary("mosquitto"), "-c", str(conf)], port, tmp)


def make_vm(tmp: Path) -> VictoriaMetrics:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [
        _binary("victoria-metrics"),
        f"-storageDataPath={tmp / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
        "-search.disableCache",
    ]
    return VictoriaMetrics(argv, port, tmp)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto shared by the tests that do not restart it."""
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
    body: dict[str, Any] = {
        "v": 1,
        "elevator_id": elevator_id,
        "seq": seq,
        "boot": boot,
        "ts": datetime.now(UTC).isoformat(),
        "floor": 3,
        "moving": False,
        "direction": "none",
        "speed_mps": 0.0,
        "door": "closed",
        "door_zone": True,
        "occupied": False,
        "load_pct": 0.0,
        "mode": "normal",
        "alarm_button": False,
        "power": "mains",
        "safety_circuit": "closed",
    }
    body.update(fields)
    return json.dumps(body).encode()


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
        GATEWAY_MQTT_URL=broker.url,
        GATEWAY_MQTT_CLIENT_ID="gw-" + uuid.uuid4().hex[:8],
        GATEWAY_TSDB_URL=vm.url,
        GATEWAY_STORE_URL=f"sqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_SPOOL_DIR=str(tmp_path / "spool"),
        GATEWAY_HTTP_PORT=str(free_port()),
        GATEWAY_FLUSH_INTERVAL_S="0.05",
    )
    return env

"""The baselines bench/throughput.py holds the gateway against, each draining a queued
session in a process of its own (nothing else of the bench shares its interpreter):

- `bare_libmosquitto`: the fastest consumer libmosquitto allows from Python: one thread on
  `loop_forever`, a raw ctypes message callback that only counts (no lock, no message
  object), MQTT 5 with a Receive Maximum of 65535 so the broker never waits for PUBACKs.
  libmosquitto acknowledges each message itself, right after the callback.
- `bridge`: the least a gateway into the store must do: the same consumer, then `json.loads`,
  one line of line protocol with every field as sent (device time from `ts`), and a POST to
  VictoriaMetrics per 5000 lines on one kept-alive connection. No validation, dedup, rules,
  black box or durability: the acknowledgement leaves before the line is stored.
- `bare_paho`: paho-mqtt on `loop_forever`, counting, the same Receive Maximum.

Each marks, in a shared array (`Marks`), the monotonic time and its own CPU time at its first
message and at its last (the bridge: once its last batch is posted); the bridge's end is
read from the store's own row counter by the caller. `time.perf_counter` is CLOCK_MONOTONIC
on Linux: one clock for every process.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

_RECEIVE_MAXIMUM = 65535
_SESSION_EXPIRY_S = 3600
_BRIDGE_BATCH = 5000
FIRST, LAST, FIRST_CPU, LAST_CPU = range(4)  # indices into the marks


def _mark(marks: Any, at: int, cpu_at: int) -> None:
    marks[at] = time.perf_counter()
    marks[cpu_at] = time.process_time()


def _counter(frames: int, marks: Any, stop: Callable[[], object]) -> Callable[..., None]:
    """A message callback that only counts: the first and the `frames`-th message marked,
    then `stop`. Three positional arguments, as both libmosquitto's raw callback and paho's
    pass them."""
    count = 0

    def on_message(_a: object, _b: object, _c: object) -> None:
        nonlocal count
        count += 1
        if count == 1:
            _mark(marks, FIRST, FIRST_CPU)
        if count == frames:
            _mark(marks, LAST, LAST_CPU)
            stop()

    return on_message


def _libmosquitto_client(port: int, client_id: str, on_message: Any) -> Any:
    """A connected libmosquitto MQTT 5 client on session `client_id`, its raw callback set
    (returned with the client: it must stay referenced)."""
    from pymosquitto.bindings import ON_MESSAGE, libmosq
    from pymosquitto.client import Mosquitto, PropertyFactory
    from pymosquitto.constants import MQTT5PropertyID

    client = Mosquitto(client_id=client_id, clean_start=False, protocol=5)
    callback = ON_MESSAGE(on_message)
    libmosq.mosquitto_message_callback_set(client.ptr, callback)
    props = PropertyFactory.INT32(MQTT5PropertyID.SESSION_EXPIRY_INTERVAL, _SESSION_EXPIRY_S)
    libmosq.mosquitto_property_add_int16(
        ctypes.byref(props), MQTT5PropertyID.RECEIVE_MAXIMUM, _RECEIVE_MAXIMUM
    )
    client.connect_bind_v5(b"127.0.0.1", port, 60, None, props)
    libmosq.mosquitto_property_free_all(ctypes.byref(props))
    return client, callback


def bare_libmosquitto(port: int, client_id: str, frames: int, marks: Any) -> None:
    """Count `frames` messages, then disconnect."""
    client = None
    on_message = _counter(frames, marks, lambda: client.disconnect())
    client, _keep = _libmosquitto_client(port, client_id, on_message)
    client.loop_forever()


def line_of(payload: bytes) -> str:
    """The bridge's line: every field as sent, the elevator as the one tag, at device time."""
    body = json.loads(payload)
    fields = []
    for key, value in body.items():
        if key in ("elevator_id", "ts"):
            continue
        if value is True or value is False:
            fields.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int):
            fields.append(f"{key}={value}i")
        elif isinstance(value, float):
            fields.append(f"{key}={value!r}")
        else:
            fields.append(f'{key}="{value}"')
    ns = int(datetime.fromisoformat(body["ts"]).timestamp() * 1e9)
    return f"elevator_status,elevator_id={body['elevator_id']} {','.join(fields)} {ns}"


class _Poster:
    """POSTs batches of lines to VictoriaMetrics' InfluxDB write endpoint, kept alive."""

    def __init__(self, vm_port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", vm_port, timeout=60)

    def post(self, lines: list[str]) -> None:
        self._conn.request("POST", "/api/v2/write?precision=ns", "\n".join(lines).encode())
        answer = self._conn.getresponse()
        answer.read()
        if answer.status != 204:
            raise RuntimeError(f"VictoriaMetrics answered {answer.status}")


def bridge(port: int, client_id: str, frames: int, vm_port: int, marks: Any) -> None:
    """Each message as one line into VictoriaMetrics, `_BRIDGE_BATCH` lines a request."""
    poster = _Poster(vm_port)
    lines: list[str] = []
    count = 0
    client = None

    def on_message(_m: int, _u: Any, message: Any) -> None:
        nonlocal count, lines
        msg = message.contents
        lines.append(line_of(ctypes.string_at(msg.payload, msg.payloadlen)))
        count += 1
        if count == 1:
            _mark(marks, FIRST, FIRST_CPU)
        if len(lines) >= _BRIDGE_BATCH or count == frames:
            poster.post(lines)
            lines = []
        if count == frames:
            _mark(marks, LAST, LAST_CPU)
            client.disconnect()

    client, _keep = _libmosquitto_client(port, client_id, on_message)
    client.loop_forever()


def bare_paho(port: int, client_id: str, frames: int, marks: Any) -> None:
    """Count `frames` messages with paho-mqtt (acknowledged after the callback), then stop."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_message = _counter(frames, marks, client.disconnect)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = _SESSION_EXPIRY_S
    props.ReceiveMaximum = _RECEIVE_MAXIMUM
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_forever()

"""The ingest session on libmosquitto (through the `pymosquitto` ctypes binding): the fast one.

libmosquitto parses MQTT in C, about three times the rate of paho's pure-Python protocol
code here (bench/throughput.py), but it acknowledges a QoS 1 message itself, as soon as our
callback returns; it has no manual acknowledgement. So the callback journals the message
before it returns (gateway/journal.py) and the journal is the durable hand-off: the PUBACK
only leaves once the message is written (libmosquitto queues it and, with the client marked
threaded, writes it after the callback, in the loop's write phase), and a message is only
dropped from the journal once the pipeline has it stored or spooled.

The network loop is ours, not `loop_start()`'s: libmosquitto's own reconnect sends CONNECT
without properties, which would set the session expiry to 0 and lose the persistent session
at the next disconnect.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import ssl
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from pymosquitto.bindings import (
    ON_CONNECT,
    ON_DISCONNECT,
    ON_MESSAGE,
    ON_SUBSCRIBE,
    MQTTMessageStruct,
    bind,
    libmosq,
    reason_string,
    strerror,
)
from pymosquitto.client import Mosquitto, MosquittoError, PropertyFactory
from pymosquitto.constants import LIBMOSQ_PATH, MQTT5PropertyID, ProtocolVersion

from gateway import metrics
from gateway.clock import Clock
from gateway.ingest import SUBSCRIPTIONS, AckToken, BrokerAddress, RawMessage, TlsFiles
from gateway.journal import Journal

log = structlog.get_logger(__name__)

_LOOP_TIMEOUT_MS = 200
_JOURNAL_RETRY_S = 1.0

# The raw callbacks, not pymosquitto's wrappers: those build a dataclass per message and
# convert codes into an enum that lacks MQTT 5's reason codes (a refusal would be lost).
# (Keyed by name: ctypes hands out one type for equal signatures, connect's and disconnect's.)
_CALLBACKS = {
    "connect": (ON_CONNECT, libmosq.mosquitto_connect_callback_set),
    "disconnect": (ON_DISCONNECT, libmosq.mosquitto_disconnect_callback_set),
    "subscribe": (ON_SUBSCRIBE, libmosq.mosquitto_subscribe_callback_set),
    "message": (ON_MESSAGE, libmosq.mosquitto_message_callback_set),
}
for _type, _setter in _CALLBACKS.values():
    bind(None, _setter, ctypes.c_void_p, _type)
# The network loop, straight through ctypes (it runs per packet). `_loop` releases the GIL
# while it waits for the network; `_loop_holding_gil` does not, and reads on while messages
# keep coming: taking the GIL back from the pipeline thread for every message cost more CPU
# than handling the message.
_LOOP_ARGS = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
_loop = bind(ctypes.c_int, libmosq.mosquitto_loop, *_LOOP_ARGS)
_loop_holding_gil = bind(ctypes.c_int, ctypes.PyDLL(LIBMOSQ_PATH).mosquitto_loop, *_LOOP_ARGS)


class LibmosquittoSession:
    """Same shape as `ingest.MqttSession`; `AckToken.mid` is the message's journal segment."""

    def __init__(
        self,
        url: str,
        client_id: str,
        on_message: Callable[[RawMessage], None],
        clock: Clock,
        journal: Journal,
        *,
        topic_prefix: str = "",
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive_s: int = 30,
        tls: TlsFiles,
    ) -> None:
        self._address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._on_message = on_message
        self._clock = clock
        self._journal = journal
        self._topics = [topic_prefix + t for t in SUBSCRIPTIONS]
        self._keepalive = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._suback_pending = 0
        self._burst = 0  # messages handled in the current loop call
        self._client = _client(self._address, client_id, tls)
        # Kept referenced: libmosquitto holds only the C pointers.
        self._callbacks = []
        for name, (c_type, setter) in _CALLBACKS.items():
            callback = c_type(getattr(self, "_handle_" + name))
            setter(self._client.ptr, callback)
            self._callbacks.append(callback)
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        # What a previous run journaled and may not have stored goes first.
        recovered = 0
        for entry in self._journal.recover():
            received_at = datetime.fromtimestamp(entry.received_at, UTC)
            self._deliver(
                RawMessage(entry.topic, entry.payload, received_at, AckToken(entry.segment, 1))
            )
            recovered += 1
        if recovered:
            log.warning("journal_recovered", messages=recovered)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def ack(self, tokens: Iterable[AckToken]) -> None:
        self._journal.settle(segment for segment, qos in tokens if qos)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(MosquittoError):  # not connected
            self._client.disconnect()
        self._thread.join()
        self._connected.clear()
        self._journal.close()

    # -- the network thread ---------------------------------------------------------------
    def _run(self) -> None:
        # Doubling delay from a random start per process: a fleet of gateways does not
        # reconnect in lockstep after a broker restart.
        delay = first_delay = random.uniform(1.0, 2.0)
        linked = False
        while not self._stopping.is_set():
            if not linked:
                try:
                    self._connect()
                    linked = True
                    delay = first_delay
                except MosquittoError as exc:
                    log.warning("mqtt_connect_failed", client_id=self._client_id, error=str(exc))
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
            self._burst = 0
            rc = _loop(self._client.ptr, _LOOP_TIMEOUT_MS, 1)
            while rc == 0 and self._burst:
                self._burst = 0
                rc = _loop_holding_gil(self._client.ptr, 0, 1)
            if rc != 0:
                linked = False
                if self._connected.is_set():  # libmosquitto did not call back: no DISCONNECT
                    self._handle_disconnect(None, None, rc)
                if not self._stopping.is_set():
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 30.0)

    def _connect(self) -> None:
        # clean_start=False (set on the client) + session expiry: the broker keeps our
        # subscriptions and queues frames while we are away.
        props = PropertyFactory.INT32(
            MQTT5PropertyID.SESSION_EXPIRY_INTERVAL, self._session_expiry_s
        )
        try:
            self._client.connect_bind_v5(
                self._address.host.encode(), self._address.port, self._keepalive, None, props
            )
        finally:
            libmosq.mosquitto_property_free_all(ctypes.byref(props))

    def _handle_connect(self, _m: int, _u: Any, rc: int) -> None:
        if rc != 0:
            log.error("mqtt_connect_refused", client_id=self._client_id, reason=reason_string(rc))
            return
        self._suback_pending = len(self._topics)
        for topic in self._topics:
            self._client.subscribe(topic, 1)
        log.info("mqtt_connected", client_id=self._client_id)

    def _handle_subscribe(self, _m: int, _u: Any, _mid: int, count: int, granted: Any) -> None:
        codes = [granted[i] for i in range(count)]
        if any(code > 2 for code in codes):
            refused = [reason_string(code) for code in codes]
            log.error("mqtt_subscribe_refused", client_id=self._client_id, reasons=refused)
            return
        self._suback_pending -= 1
        if self._suback_pending == 0:
            self._connected.set()  # only from now on is nothing published missed
            metrics.BROKER_UP.set(1)

    def _handle_disconnect(self, _c: Any, _u: Any, rc: int) -> None:
        self._connected.clear()
        metrics.BROKER_UP.set(0)
        if self._stopping.is_set():
            return  # our own close
        log.warning("mqtt_disconnected", client_id=self._client_id, error=strerror(rc))

    def _handle_message(self, _m: int, _u: Any, message: Any) -> None:
        self._burst += 1
        msg: MQTTMessageStruct = message.contents
        topic_bytes: bytes = msg.topic
        payload = ctypes.string_at(msg.payload, msg.payloadlen)
        now = self._clock.now()
        segment = self._journal_append(topic_bytes, payload, now.timestamp())
        topic = topic_bytes.decode("utf-8", "replace")
        self._deliver(RawMessage(topic, payload, now, AckToken(segment, 1)))

    def _journal_append(self, topic: bytes, payload: bytes, received_at: float) -> int:
        # The PUBACK goes out when we return: until the journal has the message, we don't.
        # (Held long enough, the broker drops the connection and redelivers it instead.)
        while True:
            try:
                return self._journal.append(topic, payload, received_at)
            except OSError:
                log.exception("journal_append_failed_retrying")
                self._stopping.wait(_JOURNAL_RETRY_S)

    def _deliver(self, raw: RawMessage) -> None:
        try:
            self._on_message(raw)
        except Exception:
            # Never let a bug take the network loop down; the message stays in the journal
            # and is handed on again at the next start.
            log.exception("ingest_handoff_failed", topic=raw.topic)


def _client(address: BrokerAddress, client_id: str, tls: TlsFiles) -> Mosquitto:
    client = Mosquitto(client_id=client_id, clean_start=False, protocol=ProtocolVersion.MQTTv5)
    # Threaded: packets queued by libmosquitto (the PUBACK among them) are written by our
    # loop after the callback, never from inside `handle__publish` before it.
    client.threaded_set(True)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        ca_file = tls.ca_file or ssl.get_default_verify_paths().cafile
        client.tls_set(
            str(ca_file).encode() if ca_file else None,
            None if ca_file else ssl.get_default_verify_paths().capath.encode(),
            str(tls.cert_file).encode() if tls.cert_file else None,
            str(tls.key_file).encode() if tls.key_file else None,
            None,
        )
    return client

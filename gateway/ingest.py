"""The MQTT edge: a persistent QoS 1 session that hands messages on and acknowledges late.

Nothing past this module (and `ingest_libmosquitto`, the fast session) imports an MQTT
library: messages leave here as `RawMessage`, taken in order by the pipeline's thread with
`Session.receive`, and acknowledgements come back as the opaque `AckToken`s they carried.
`open_session` picks the client by name.

Why paho-mqtt with `manual_ack`: a QoS 1 message is PUBACKed only when the pipeline says its
frame is durable (stored or spooled), so a crash in between leads to redelivery, not loss.
Flow control is MQTT 5's Receive Maximum: the broker never has more than
`receive_window` unacknowledged messages in flight to us, so the inbox is bounded by the
protocol itself; past that the broker queues for us (backpressure, never a drop).
"""

from __future__ import annotations

import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import metrics
from gateway.clock import Clock

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = ("elevators/+/status", "elevators/+/event", "elevators/+/online")


class AckToken(NamedTuple):
    mid: int  # the MQTT packet id (paho), or the journal segment (libmosquitto)
    qos: int  # 0: nothing to acknowledge


@dataclass(slots=True)  # not frozen: one per message, and frozen costs 3x to build
class RawMessage:
    topic: str
    payload: bytes
    received_at: datetime
    ack: AckToken


class MqttError(Exception):
    """The broker could not be reached or refused us."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an mqtt:// or mqtts:// URL: {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """For mqtts://: the CA to verify the broker with (system CAs when None) and an optional
    client certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class Session(Protocol):
    """What the gateway needs of an ingest session, whichever the client library."""

    @property
    def connected(self) -> bool: ...

    @property
    def backlog(self) -> int:
        """Messages received and not yet taken by `receive`."""
        ...

    def start(self) -> None: ...

    def wait_connected(self, timeout: float) -> bool: ...

    def receive(self, timeout: float) -> list[RawMessage]:
        """The messages received since the last call, in order, waiting up to `timeout`
        seconds for one ([] if none came). Called from one thread only."""
        ...

    def ack(self, tokens: Iterable[AckToken]) -> None: ...

    def close(self) -> None: ...


def open_session(
    client: str,
    url: str,
    client_id: str,
    clock: Clock,
    *,
    journal_dir: Path,
    journal_fsync_interval_s: float,
    topic_prefix: str,
    receive_window: int,
    session_expiry_s: int,
    keepalive_s: int,
    tls: TlsFiles,
    log_level: str = "info",
    extra_topics: Sequence[str] = (),
) -> Session:
    """The ingest session on `client` ("libmosquitto" or "paho"), not yet started;
    `extra_topics`: filters to subscribe to besides the contract's (device profiles')."""
    if client == "paho":
        return MqttSession(
            url, client_id, clock,
            topic_prefix=topic_prefix, receive_window=receive_window,
            session_expiry_s=session_expiry_s, keepalive_s=keepalive_s, tls=tls,
            extra_topics=extra_topics,
        )  # fmt: skip
    from gateway.ingest_libmosquitto import LibmosquittoSession, ReceiverConfig

    config = ReceiverConfig(
        url, client_id, journal_dir, topic_prefix, session_expiry_s, keepalive_s, tls,
        journal_fsync_interval_s, backlog=receive_window, log_level=log_level,
        parent_pid=os.getpid(), extra_topics=tuple(extra_topics),
    )  # fmt: skip
    return LibmosquittoSession(config, clock)


def _client(
    address: BrokerAddress, client_id: str, *, manual_ack: bool, tls: TlsFiles
) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(
            ca_certs=tls.ca_file,
            certfile=tls.cert_file,
            keyfile=tls.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    # paho doubles the delay up to the maximum; a random start per process keeps a fleet of
    # gateways from reconnecting in lockstep after a broker restart (jitter).
    client.reconnect_delay_set(min_delay=random.uniform(1.0, 2.0), max_delay=30)  # type: ignore[arg-type]
    return client


class MqttSession:
    """The ingest session: `start()` connects in the background, `close()` disconnects.

    paho's network thread puts each message in the inbox that `receive` empties; `ack` may
    be called from any thread.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        clock: Clock,
        *,
        topic_prefix: str = "",
        receive_window: int = 2000,
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive_s: int = 30,
        tls: TlsFiles = TlsFiles(),
        extra_topics: Sequence[str] = (),
    ) -> None:
        self._address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._clock = clock
        # Unbounded here, bounded by the broker: at most `receive_window` unacknowledged.
        self._inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
        self._topics = [(topic_prefix + t, 1) for t in (*SUBSCRIPTIONS, *extra_topics)]
        self._keepalive = keepalive_s
        self._connected = threading.Event()
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = session_expiry_s
        self._props.ReceiveMaximum = receive_window
        self._client = _client(self._address, client_id, manual_ack=True, tls=tls)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        # clean_start=False + session expiry: the broker keeps our subscriptions and queues
        # frames while we are away, and delivers them when we come back.
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=self._keepalive,
            clean_start=False,
            properties=self._props,
        )
        self._client.loop_start()

    @property
    def backlog(self) -> int:
        return self._inbox.qsize()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def receive(self, timeout: float) -> list[RawMessage]:
        try:
            messages = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        for _ in range(self._inbox.qsize()):
            messages.append(self._inbox.get_nowait())
        return messages

    def ack(self, tokens: Iterable[AckToken]) -> None:
        for mid, qos in tokens:
            if qos:
                self._client.ack(mid, qos)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def _handle_connect(self, client: paho.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("mqtt_connect_refused", client_id=self._client_id, reason=str(rc))
            return
        # Subscribing again is harmless with a persistent session, and needed without one.
        client.subscribe(self._topics)
        log.info(
            "mqtt_connected", client_id=self._client_id, session_present=bool(flags.session_present)
        )

    def _handle_subscribe(
        self, _c: paho.Client, _u: Any, _mid: int, codes: list[Any], _p: Any
    ) -> None:
        refused = [str(c) for c in codes if c.is_failure]
        if refused:
            log.error("mqtt_subscribe_refused", client_id=self._client_id, reasons=refused)
            return
        self._connected.set()  # only from now on is nothing published missed
        metrics.BROKER_UP.set(1)

    def _handle_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connected.clear()
        metrics.BROKER_UP.set(0)
        log.warning("mqtt_disconnected", client_id=self._client_id, reason=str(rc))

    def _handle_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self._inbox.put(
            RawMessage(msg.topic, msg.payload, self._clock.now(), AckToken(msg.mid, msg.qos))
        )


class Publisher:
    """A separate connection for what the gateway publishes (dispatch, dead letter), so an
    alert never waits behind ingest backpressure."""

    def __init__(self, url: str, client_id: str, tls: TlsFiles = TlsFiles()) -> None:
        self._address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._client = _client(self._address, client_id, manual_ack=False, tls=tls)
        self._connected = threading.Event()
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = lambda *_a: self._connected.clear()
        self._last: paho.MQTTMessageInfo | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _handle_connect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:  # refused (e.g. bad credentials): not connected, say why
            log.error("mqtt_connect_refused", client_id=self._client_id, reason=str(rc))
            return
        self._connected.set()

    def start(self) -> None:
        self._client.connect_async(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1) -> None:
        """Queue a message (paho sends it on reconnect if the broker is away)."""
        self._last = self._client.publish(topic, payload, qos=qos)

    def publish_in_order(self, messages: Sequence[tuple[str, bytes, bool]], wait_s: float) -> int:
        """Send (topic, payload, retain) messages at QoS 1 all at once, then wait up to
        `wait_s` for their acknowledgements in order: one round trip for the lot, not one
        each. Returns how many, from the first, the broker acknowledged."""
        infos = [self._client.publish(t, p, qos=1, retain=r) for t, p, r in messages]
        if infos:
            self._last = infos[-1]
        deadline = time.monotonic() + wait_s
        for acknowledged, info in enumerate(infos):
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):  # not queued: the client is disconnected
                return acknowledged
            if not info.is_published():
                return acknowledged
        return len(infos)

    def close(self, timeout: float = 5.0) -> None:
        # Messages go out in order: once the last one is sent, all before it were too.
        if self._last is not None and self.connected:
            try:
                self._last.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("publisher_close_unsent")
        self._client.disconnect()
        self._client.loop_stop()

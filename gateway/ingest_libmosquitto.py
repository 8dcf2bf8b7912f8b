"""The ingest session on libmosquitto (through the `pymosquitto` ctypes binding): the fast one.

libmosquitto parses MQTT in C, about three times the rate of paho's pure-Python protocol
code here (bench/throughput.py), but it acknowledges a QoS 1 message itself; it has no manual
acknowledgement. With the client marked threaded it only queues the PUBACK while reading
(lib/packet_mosq.c `packet__queue`), and sends it in the write phase. So our loop runs the
phases itself: read a burst of messages, journal them all with one write
(gateway/journal.py), and only then write (the PUBACKs go out). The journal is the durable
hand-off: the pipeline drops a segment only once every message in it is stored or spooled.

The client runs in a receiver process of its own (`receive`), so its per-message Python
never competes with the pipeline for the GIL; the gateway's side (`LibmosquittoSession`)
reads the journal in order on the pipeline's own thread, in one chunk per call. The receiver
dies with the gateway (PR_SET_PDEATHSIG), and holds back (stops reading from the broker)
while more than `backlog` messages wait in the journal unread: backpressure onto the broker.

The network loop is ours, not `loop_start()`'s: libmosquitto's own reconnect sends CONNECT
without properties, which would set the session expiry to 0 and lose the persistent session
at the next disconnect.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import random
import select
import signal
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
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
from pymosquitto.constants import LIBMOSQ_PATH, ErrorCode, MQTT5PropertyID, ProtocolVersion

from gateway import logs, metrics
from gateway.clock import Clock, at_wall, wall_time
from gateway.ingest import SUBSCRIPTIONS, AckToken, BrokerAddress, RawMessage, TlsFiles
from gateway.journal import Entry, JournalReader, JournalWriter

log = structlog.get_logger(__name__)

_LOOP_TIMEOUT_MS = 200
_RETRY_S = 1.0
_BATCH = 1000  # messages read, and journaled in one write, at most
_IDLE_S = 0.002  # how often the gateway looks for new journal entries when there were none
_STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ReceiverConfig:
    url: str
    client_id: str
    journal_dir: Path
    topic_prefix: str
    session_expiry_s: int
    keepalive_s: int
    tls: TlsFiles
    fsync_interval_s: float
    backlog: int  # journaled messages the gateway has not read yet, at most
    log_level: str
    parent_pid: int
    extra_topics: tuple[str, ...] = ()  # device profiles' topics


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
# The network loop is ours, in libmosquitto's steps (straight through ctypes, holding the
# GIL: none of them blocks): read, then journal what was read, then write. With the client
# threaded, reading only queues the PUBACKs (lib/packet_mosq.c packet__queue); they reach
# the socket in `mosquitto_loop_write` alone, after the journal write. `mosquitto_loop`
# would write them right after reading, one packet at a time. Only the wait for the
# socket (select.poll) lets go of the GIL.
_lib = ctypes.PyDLL(LIBMOSQ_PATH)
_loop_read = bind(ctypes.c_int, _lib.mosquitto_loop_read, ctypes.c_void_p, ctypes.c_int)
_loop_write = bind(ctypes.c_int, _lib.mosquitto_loop_write, ctypes.c_void_p, ctypes.c_int)
_loop_misc = bind(ctypes.c_int, _lib.mosquitto_loop_misc, ctypes.c_void_p)  # keepalive
_socket = bind(ctypes.c_int, _lib.mosquitto_socket, ctypes.c_void_p)
_want_write = bind(ctypes.c_bool, _lib.mosquitto_want_write, ctypes.c_void_p)


class LibmosquittoSession:
    """The gateway's side: starts the receiver process and reads its journal in order.
    Same shape as `ingest.MqttSession`; `AckToken.mid` is the message's journal segment."""

    def __init__(self, config: ReceiverConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._connected = self._context.Value("b", 0, lock=False)
        # This run's messages journaled and read: the receiver holds back on the difference.
        self._written = self._context.Value("q", 0, lock=False)
        self._read = self._context.Value("q", 0, lock=False)
        self._process = self._receiver()
        self._process_lock = threading.Lock()  # a restart against close
        self._restart_at: float | None = None  # monotonic time to replace a dead receiver
        self._reader = JournalReader(config.journal_dir)
        self._stopping = threading.Event()
        self._recovering_below = 0  # segments below are a previous run's

    @property
    def connected(self) -> bool:
        # A dead receiver hears nothing, whatever the flag it left behind says.
        return self._process.is_alive() and bool(self._connected.value)

    @property
    def backlog(self) -> int:
        return max(0, self._written.value - self._read.value)

    def start(self) -> None:
        self._recovering_below = self._reader.next_new_segment()
        self._process.start()

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() >= deadline or not self._process.is_alive():
                return False
            time.sleep(0.01)
        return True

    def receive(self, timeout: float) -> list[RawMessage]:
        deadline = time.monotonic() + timeout
        metrics.BROKER_UP.set(self.connected)
        while True:
            try:
                entries = self._reader.read()
            except Exception:
                # Unread entries stay in the journal: tried again at the next call.
                log.exception("journal_read_failed_retrying")
                time.sleep(max(0.0, deadline - time.monotonic()))
                return []
            if entries:
                return self._messages(entries)
            if not self._process.is_alive():
                self._replace_receiver()
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(_IDLE_S, left))

    def ack(self, tokens: Iterable[AckToken]) -> None:
        self._reader.settle(segment for segment, qos in tokens if qos)

    def _messages(self, entries: list[Entry]) -> list[RawMessage]:
        messages = []
        new = 0
        now = self._clock.now()  # one reading per read: the entries arrived moments ago
        ack = AckToken(-1, 1)  # one per segment, not per message: a read spans one or two
        for entry in entries:
            this_run = entry.segment >= self._recovering_below
            new += this_run
            received_at = now if this_run else self._received_before(entry)
            if ack.mid != entry.segment:
                ack = AckToken(entry.segment, 1)
            messages.append(RawMessage(entry.topic, entry.payload, received_at, ack))
        self._read.value += new  # this run's only: the receiver counts what it wrote
        return messages

    def _receiver(self) -> multiprocessing.process.BaseProcess:
        return self._context.Process(
            target=receive,
            args=(self._config, self._connected, self._written, self._read),
            name="mqtt-receiver",
            daemon=True,
        )

    def close(self) -> None:
        with self._process_lock:
            self._stopping.set()  # no restart from here on
        if self._process.pid is not None:
            self._process.terminate()  # SIGTERM: disconnect, fsync, exit
            self._process.join(_STOP_TIMEOUT_S)
            if self._process.is_alive():
                log.error("mqtt_receiver_stuck_killed", pid=self._process.pid)
                self._process.kill()
                self._process.join()
        self._reader.close()
        self._connected.value = 0
        metrics.BROKER_UP.set(0)

    def _replace_receiver(self) -> None:
        """The receiver died (OOM, a crash), and what it journaled has been read: start
        another a second later, so a receiver that cannot start does not spin."""
        if self._restart_at is None:
            log.error("mqtt_receiver_died_restarting", exitcode=self._process.exitcode)
            self._connected.value = 0
            self._restart_at = time.monotonic() + _RETRY_S
            return
        if time.monotonic() < self._restart_at:
            return
        with self._process_lock:
            if not self._stopping.is_set():
                self._written.value = self._read.value = 0  # the new receiver counts from 0
                self._process = self._receiver()
                self._process.start()
                self._restart_at = None

    def _received_before(self, entry: Entry) -> datetime:
        """A previous run's entry: when it arrived, mapped onto the clock (this run's are
        read within moments of arrival and get the clock's now, one reading per read)."""
        try:
            return at_wall(self._clock, entry.received_at)
        except (OverflowError, ValueError):
            return self._clock.now()  # a corrupt time: now is the best guess


def receive(config: ReceiverConfig, connected: Any, written: Any, read: Any) -> None:
    """The receiver process: MQTT in, journal out, until SIGTERM or the gateway's death."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != config.parent_pid:
        return  # the gateway died before we could ask to die with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle
    logs.configure(config.log_level)
    receiver = _Receiver(config, connected, written, read)
    signal.signal(signal.SIGTERM, lambda *_: receiver.stop())
    receiver.run()


class _Receiver:
    def __init__(self, config: ReceiverConfig, connected: Any, written: Any, read: Any) -> None:
        self._config = config
        self._address = BrokerAddress.parse(config.url)
        self._client_id = config.client_id
        self._topics = [config.topic_prefix + t for t in (*SUBSCRIPTIONS, *config.extra_topics)]
        self._connected = connected
        self._read = read
        self._journal = JournalWriter(config.journal_dir, fsync_interval_s=config.fsync_interval_s)
        self._written = written
        self._stopping = threading.Event()
        self._suback_pending = 0
        self._pending: list[tuple[bytes, bytes]] = []  # read, not journaled yet
        self._busy = False  # the last round stopped at its limit, not for want of data
        self._abandoned = False  # a message could not be journaled: no clean disconnect
        self._client = _client(self._address, config.client_id, config.tls)
        # Kept referenced: libmosquitto holds only the C pointers.
        self._callbacks = []
        for name, (c_type, setter) in _CALLBACKS.items():
            callback = c_type(getattr(self, "_handle_" + name))
            setter(self._client.ptr, callback)
            self._callbacks.append(callback)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
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
            rc = self._round()
            if rc != 0:
                linked = False
                if self._connected.value:  # libmosquitto did not call back: no DISCONNECT
                    self._handle_disconnect(None, None, rc)
                if not self._stopping.is_set():
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 30.0)
        if linked and not self._abandoned:
            with contextlib.suppress(MosquittoError):
                self._client.disconnect()
                _loop_write(self._client.ptr, 1)  # the PUBACKs left, then the DISCONNECT
        self._connected.value = 0
        self._journal.close()

    def _round(self) -> int:
        """Wait for the socket (unless a burst goes on), read what came, journal it in one
        write, and only then write what libmosquitto queued meanwhile: the PUBACKs."""
        ptr = self._client.ptr
        room = self._room()
        sock = _socket(ptr)
        if sock < 0:
            return ErrorCode.NO_CONN
        ready = self._busy
        if not self._busy:
            poller = select.poll()  # waits with the GIL let go
            poller.register(sock, select.POLLIN | (select.POLLOUT if _want_write(ptr) else 0))
            # Writable alone, read too: a TLS handshake goes on in `mosquitto_loop_read`.
            ready = bool(poller.poll(_LOOP_TIMEOUT_MS))
        rc = 0
        if room and ready:
            # A packet a call (lib/loop.c: max_packets is the QoS 2 queue here, so 1); a
            # call that brings no message found the socket drained (or read a SUBACK, say).
            while True:
                before = len(self._pending)
                rc = _loop_read(ptr, 1)
                if rc or len(self._pending) == before or len(self._pending) >= room:
                    break
        self._busy = rc == 0 and room > 0 and len(self._pending) >= room
        if not self._journal_pending():
            return 0  # stopping, unjournaled: not a packet more (see `_journal_pending`)
        if rc == 0 and _want_write(ptr):
            rc = _loop_write(ptr, 1)
        return rc or _loop_misc(ptr)  # misc: the keepalive ping

    def _room(self) -> int:
        """How many messages to read in this round. Backpressure: while the gateway lags,
        read none (wait here), so the broker queues for us."""
        while True:
            room = self._config.backlog - (self._written.value - self._read.value)
            if room > 0:
                return min(room, _BATCH)
            if self._stopping.wait(0.001):
                return 0

    def _journal_pending(self) -> bool:
        """Journal the messages read this round, in one write, before any of their PUBACKs
        goes. False: it failed and we are stopping; then we leave without writing another
        packet, so the broker sees the connection drop and delivers them again."""
        if not self._pending:
            return True
        while True:
            try:
                self._journal.append_many(self._pending, wall_time())
                break
            except OSError:
                log.exception("journal_append_failed_retrying")
                if self._stopping.wait(_RETRY_S):
                    self._abandoned = True
                    return False
        self._written.value += len(self._pending)  # once written: the gateway reads on it
        self._pending = []
        return True

    def _connect(self) -> None:
        # clean_start=False (set on the client) + session expiry: the broker keeps our
        # subscriptions and queues frames while we are away.
        props = PropertyFactory.INT32(
            MQTT5PropertyID.SESSION_EXPIRY_INTERVAL, self._config.session_expiry_s
        )
        # Receive Maximum: without it Mosquitto keeps its max_inflight_messages (20) in flight
        # to us, and each burst waits for the PUBACKs of the last.
        libmosq.mosquitto_property_add_int16(
            ctypes.byref(props), MQTT5PropertyID.RECEIVE_MAXIMUM, min(self._config.backlog, 65535)
        )
        try:
            self._client.connect_bind_v5(
                self._address.host.encode(),
                self._address.port,
                self._config.keepalive_s,
                None,
                props,
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
            self._connected.value = 1  # only from now on is nothing published missed

    def _handle_disconnect(self, _m: Any, _u: Any, rc: int) -> None:
        self._connected.value = 0
        if self._stopping.is_set():
            return  # our own close
        log.warning("mqtt_disconnected", client_id=self._client_id, error=strerror(rc))

    def _handle_message(self, _m: int, _u: Any, message: Any) -> None:
        # Only taken in: `_round` journals it before letting libmosquitto send its PUBACK.
        msg: MQTTMessageStruct = message.contents
        self._pending.append((msg.topic, ctypes.string_at(msg.payload, msg.payloadlen)))


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

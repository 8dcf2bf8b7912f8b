"""The ingest journal: the reader gets every entry in order, across segments and across a
restart; a segment goes once read and settled; a torn or half-written record waits or is
ignored, never misread. And the receiver process that writes it is replaced if it dies."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.app import Gateway
from gateway.ingest import TlsFiles
from gateway.ingest_libmosquitto import ReceiverConfig, receive
from gateway.journal import JournalReader, JournalWriter
from tests.conftest import Broker, Device, VictoriaMetrics, publish_all, status_frame, wait_for


def _write(writer: JournalWriter, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        writer.append_many([(f"elevators/E{i}/status".encode(), b"frame %d" % i)], 1000.0 + i)


def _read_all(reader: JournalReader) -> list:
    entries, batch = [], reader.read()
    while batch:
        entries += batch
        batch = reader.read()
    return entries


def test_entries_come_in_order_across_segments_and_settled_segments_go(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, segment_bytes=100)  # a few records a segment
    reader = JournalReader(tmp_path)
    _write(writer, 10)
    entries = _read_all(reader)
    assert [e.payload for e in entries] == [b"frame %d" % i for i in range(10)]
    assert entries[-1].topic == "elevators/E9/status"
    assert entries[-1].received_at == 1009.0
    assert len({e.segment for e in entries}) > 2
    reader.settle(e.segment for e in entries)
    # Every segment read to its end and settled is gone; the one being written stays.
    assert len(list(tmp_path.glob("*.wal"))) == 1
    writer.close()
    reader.close()
    assert list(tmp_path.glob("*.wal")) == []


def test_unsettled_entries_are_read_again_after_a_restart(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, segment_bytes=200)
    reader = JournalReader(tmp_path)
    _write(writer, 10)
    entries = _read_all(reader)
    reader.settle(e.segment for e in entries[:4])
    writer.close()
    reader.close()

    again = JournalReader(tmp_path)
    past = again.next_new_segment()
    new_writer = JournalWriter(tmp_path)
    _write(new_writer, 2, start=10)
    replayed = _read_all(again)
    old = [e for e in replayed if e.segment < past]
    # Whole segments stay until all of theirs is settled: the last six at least come back.
    assert [e.payload for e in old][-6:] == [b"frame %d" % i for i in range(4, 10)]
    assert [e.payload for e in replayed if e.segment >= past] == [b"frame 10", b"frame 11"]
    new_writer.close()


def test_a_record_being_written_waits_for_its_end(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    reader = JournalReader(tmp_path)
    _write(writer, 1)
    writer.close()
    (segment,) = tmp_path.glob("*.wal")
    whole = segment.read_bytes()
    segment.write_bytes(whole[:-3])  # the writer is mid-write
    assert reader.read() == []
    with segment.open("ab") as f:
        f.write(whole[-3:])
    assert [e.payload for e in reader.read()] == [b"frame 0"]


def test_a_torn_last_record_of_a_dead_run_is_skipped(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    _write(writer, 3)
    writer.close()
    (segment,) = tmp_path.glob("*.wal")
    segment.write_bytes(segment.read_bytes()[:-4])  # the machine died mid-write
    reader = JournalReader(tmp_path)
    next_run = JournalWriter(tmp_path)  # the next run's receiver starts a newer segment
    _write(next_run, 2, start=10)
    payloads = [e.payload for e in _read_all(reader)]
    assert payloads == [b"frame 0", b"frame 1", b"frame 10", b"frame 11"]
    next_run.close()


def test_a_batch_is_written_as_a_record_each(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    writer.append_many([(b"a/1", b"one"), (b"a/2", b"two")], 1000.0)
    writer.append_many([(b"a/3", b"three")], 1001.0)
    entries = _read_all(JournalReader(tmp_path))
    assert [(e.topic, e.payload, e.received_at) for e in entries] == [
        ("a/1", b"one", 1000.0),
        ("a/2", b"two", 1000.0),
        ("a/3", b"three", 1001.0),
    ]
    writer.close()


def test_a_crash_without_close_loses_nothing_appended(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    _write(writer, 5)
    # No close(): the process died. Each append was one write(2), so the records are there.
    assert len(_read_all(JournalReader(tmp_path))) == 5


def test_a_receiver_that_dies_is_reported_and_replaced(
    gateway_settings, device: Device, vm: VictoriaMetrics, prefix: str
) -> None:
    """libmosquitto's receiver process killed (OOM, a crash in C): the gateway says it is not
    connected (so no car reads as silent meanwhile), starts another, and frames flow again."""
    eid = f"{prefix}-phoenix"
    with Gateway(gateway_settings()) as gw:
        assert gw.session.wait_connected(10)
        os.kill(gw.session._process.pid, signal.SIGKILL)
        wait_for(lambda: not gw.session.connected)
        assert gw.health()["broker"] is False
        wait_for(lambda: gw.session.connected, timeout=30)
        for seq in range(20):
            device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
        wait_for(lambda: vm.count("elevator_status_seq", prefix) == 20)


def _receive_on_a_small_disk(limit: int, *args: Any) -> None:
    """The receiver process, with the journal allowed `limit` bytes: every write that would
    go beyond fails (EFBIG), as on a full disk, and keeps failing."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the failed write is an OSError then
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    receive(*args)


def test_the_broker_counts_no_message_acknowledged_before_it_is_journaled(
    broker: Broker, tmp_path: Path
) -> None:
    """The receiver reads messages in batches and acknowledges a batch (libmosquitto writes
    the PUBACKs) only once the journal has it. kill -9 the receiver while a batch cannot be
    journaled: every message is either in the journal or delivered again by the broker,
    and those journaled before were acknowledged (not delivered again)."""
    topic_prefix = f"T{uuid.uuid4().hex[:8]}/"
    context = multiprocessing.get_context("spawn")
    connected = context.Value("b", 0, lock=False)
    written = context.Value("q", 0, lock=False)
    read = context.Value("q", 0, lock=False)
    config = ReceiverConfig(
        broker.url, topic_prefix + "rx", tmp_path / "journal", topic_prefix, 3600, 60,
        TlsFiles(), 0.05, backlog=100_000, log_level="warning", parent_pid=os.getpid(),
    )  # fmt: skip
    limit = 64 * 1024
    receiver = context.Process(
        target=_receive_on_a_small_disk, args=(limit, config, connected, written, read)
    )
    receiver.start()
    try:
        wait_for(lambda: connected.value == 1)
        payload = b"x" * 300  # ~350 bytes a record: the first 100 fit, the next 900 do not

        def messages(seqs: range) -> list[tuple[str, bytes]]:
            return [(f"{topic_prefix}elevators/E{i}/status", b"%d " % i + payload) for i in seqs]

        assert publish_all(broker.url, messages(range(100))) == 100
        wait_for(lambda: written.value == 100)
        assert publish_all(broker.url, messages(range(100, 1000))) == 900
        time.sleep(2)  # read, and the journal write failed (retried every second)
    finally:
        receiver.kill()
        receiver.join()
    journaled = [int(e.payload.split()[0]) for e in _read_all(JournalReader(tmp_path / "journal"))]
    assert len(journaled) == written.value  # counted once written, never before
    assert 100 <= len(journaled) < 1000

    again: list[int] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=topic_prefix + "rx", protocol=paho.MQTTv5
    )
    client.on_message = lambda _c, _u, msg: again.append(int(msg.payload.split()[0]))
    expiry = Properties(PacketTypes.CONNECT)
    expiry.SessionExpiryInterval = 0  # the session goes with this connection
    host, port = broker.url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port), clean_start=False, properties=expiry)
    client.loop_start()
    try:
        wait_for(lambda: len(set(journaled) | set(again)) == 1000)
    finally:
        client.disconnect()
        client.loop_stop()
    assert not set(range(100)) & set(again)  # journaled, then acknowledged

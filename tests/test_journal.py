"""The ingest journal: the reader gets every entry in order, across segments and across a
restart; a segment goes once read and settled; a torn or half-written record waits or is
ignored, never misread. And the receiver process that writes it is replaced if it dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from gateway.app import Gateway
from gateway.journal import JournalReader, JournalWriter
from tests.conftest import Device, VictoriaMetrics, status_frame, wait_for


def _write(writer: JournalWriter, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        writer.append(f"elevators/E{i}/status".encode(), b"frame %d" % i, 1000.0 + i)


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

"""The ingest journal: what is appended and not settled comes back after a restart, in order;
settled segments are deleted; a torn last record is ignored."""

from __future__ import annotations

from pathlib import Path

from gateway.journal import Journal


def _fill(journal: Journal, n: int, start: int = 0) -> list[int]:
    return [
        journal.append(f"elevators/E{i}/status".encode(), b"frame %d" % i, 1000.0 + i)
        for i in range(start, start + n)
    ]


def test_unsettled_messages_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=200)  # a few records a segment
    segments = _fill(journal, 10)
    assert len(set(segments)) > 1
    journal.settle(segments[:4])
    journal.close()

    again = Journal(tmp_path)
    entries = list(again.recover())
    # Whole segments go: the four settled ones went only where their segment was all settled.
    payloads = [e.payload for e in entries]
    assert payloads == sorted(payloads, key=lambda p: int(p.split()[1]))
    assert payloads[-6:] == [b"frame %d" % i for i in range(4, 10)]
    assert entries[-1].topic == "elevators/E9/status"
    assert entries[-1].received_at == 1009.0
    again.settle(e.segment for e in entries)
    again.close()
    assert list(tmp_path.glob("*.wal")) == []
    assert list(Journal(tmp_path).recover()) == []


def test_settled_segments_are_deleted_as_the_journal_rotates(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=200)
    for _ in range(20):
        journal.settle(_fill(journal, 5))
    assert len(list(tmp_path.glob("*.wal"))) == 1  # only the one being written
    assert journal.unsettled == 0
    journal.close()
    assert list(tmp_path.glob("*.wal")) == []


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    _fill(journal, 3)
    journal.close()
    (segment,) = tmp_path.glob("*.wal")
    data = segment.read_bytes()
    segment.write_bytes(data[:-4])  # the machine died mid-write of the third
    assert [e.payload for e in Journal(tmp_path).recover()] == [b"frame 0", b"frame 1"]


def test_a_crash_without_close_loses_nothing_appended(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    _fill(journal, 5)
    # No close(): the process died. Each append was one write(2), so the records are there.
    assert len(list(Journal(tmp_path).recover())) == 5

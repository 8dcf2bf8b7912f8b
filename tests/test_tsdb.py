"""Line protocol per contract §4, the spool, and the durable writer's fall-back and replay."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import FixedClock
from gateway.frames import Frame, decode
from gateway.spool import Point, Spool
from gateway.store import open_store
from gateway.tsdb import (
    DurableWriter,
    EmbeddedSink,
    Refused,
    Sink,
    SinkError,
    escape_tag,
    incident_point,
    to_point,
)
from tests.conftest import event_frame, status_frame, wait_for

NOW = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
TS = NOW.isoformat()


def _frame(topic: str, payload: bytes) -> Frame:
    frame = decode(topic, payload, NOW)
    assert isinstance(frame, Frame)
    return frame


def test_status_line() -> None:
    body = json.loads(status_frame("E1", 42, door="open", occupied=True, speed_mps=1.5))
    body["ts"] = "2026-11-27T09:00:00.250+08:00"
    point = to_point(
        _frame("elevators/E1/status", json.dumps(body).encode()), ",district=West\\ Side"
    )
    ts_ns = 1_795_741_200_250_000_000
    assert point == Point("elevator_status", "E1", ts_ns, point.line, 1, 42)
    head, rest = point.line.split(" floor=")
    fields, ts = ("floor=" + rest).split(" ")
    assert head == "elevator_status,elevator_id=E1,district=West\\ Side"
    assert ts == str(ts_ns)
    values = dict(f.split("=", 1) for f in fields.split(","))
    assert values == {
        "floor": "3i",
        "moving": "false",
        "direction": '"none"',
        "speed_mps": "1.5",
        "door": '"open"',
        "door_code": "2i",
        "door_zone": "true",
        "occupied": "true",
        "load_pct": "0.0",
        "mode": '"normal"',
        "alarm_button": "false",
        "power": '"mains"',
        "safety_circuit": '"closed"',
        "seq": "42i",
        "rx_lag_ms": "-250.0",
    }


def test_event_line_escapes_detail() -> None:
    payload = event_frame("E1", 7, "OVERSPEED", detail={"note": 'say "hi"\n'})
    body = json.loads(payload) | {"ts": NOW.isoformat()}
    point = to_point(_frame("elevators/E1/event", json.dumps(body).encode()))
    assert point.line.startswith(
        "elevator_event,elevator_id=E1,code=OVERSPEED,state=raised seq=7i,"
    )
    assert 'detail="{\\"note\\":\\"say \\\\\\"hi\\\\\\"\\\\n\\"}"' in point.line
    assert "\n" not in point.line


def test_online_line_uses_receive_time() -> None:
    point = to_point(_frame("elevators/E1/online", b"0"))
    assert point.line == f"elevator_online,elevator_id=E1 online=false {point.ts_ns}"
    assert point.ts_ns == int(NOW.timestamp()) * 1_000_000_000


def test_escape_tag() -> None:
    assert escape_tag("Acme, Lifts=Best Co") == "Acme\\,\\ Lifts\\=Best\\ Co"
    # Line protocol has no escape for a line break: it would end the point mid-tag.
    assert escape_tag("Wuhou\nDistrict\r\t") == "Wuhou\\ District\\ \\ "


def _points(start: int, n: int) -> list[Point]:
    return [Point("m", "E1", i, f"m,elevator_id=E1 v={i}i {i}") for i in range(start, start + n)]


def _writer_noting_refusals(
    sink: Sink, spool: Spool, max_backoff_s: float
) -> tuple[DurableWriter, list[int]]:
    """A writer on `sink`, and the ts_ns of the points it hands to the dead letter."""
    refused: list[int] = []
    writer = DurableWriter(
        sink, spool, FixedClock(NOW), max_backoff_s=max_backoff_s,
        on_refused=lambda points, _answer: refused.extend(p.ts_ns for p in points),
    )  # fmt: skip
    return writer, refused


def test_spool_survives_reopen_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_points(0, 3), NOW)
    spool.append(_points(3, 2), NOW)
    (tmp_path / "0000000000000009-1-0.tmp").write_text("half a batch")  # a crash mid-append
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.depth == 5
    assert not list(tmp_path.glob("*.tmp"))
    number, points = reopened.peek()  # type: ignore[misc]
    assert points == _points(0, 3)
    reopened.remove(number)
    reopened.append(_points(5, 1), NOW)
    assert [p.ts_ns for p in reopened.peek()[1]] == [3, 4]  # type: ignore[index]


def test_spool_drops_oldest_over_its_limit_and_counts(tmp_path: Path) -> None:
    dropped: list[int] = []
    spool = Spool(tmp_path, max_bytes=300, on_drop=dropped.append)
    for start in range(0, 30, 3):
        spool.append(_points(start, 3), NOW)
    assert spool.size_bytes <= 300
    assert sum(dropped) + spool.depth == 30
    assert spool.peek()[1][0].ts_ns == sum(dropped)  # type: ignore[index]


class FlakySink:
    """A sink that fails writes while `down` is set, and refuses (400) any batch holding a
    point whose ts_ns is in `poison`, as InfluxDB does (the real store is tested elsewhere)."""

    concurrent_writes = 1

    def __init__(self, poison: frozenset[int] = frozenset()) -> None:
        self.down = False
        self.poison = poison
        self.points: list[Point] = []
        self.requests = 0

    def write(self, points: Sequence[Point]) -> None:
        self.requests += 1
        if self.down:
            raise SinkError("connection refused")
        if any(p.ts_ns in self.poison for p in points):
            raise Refused("HTTP 400: field type conflict")
        self.points.extend(points)

    def close(self) -> None:
        pass


def test_writer_spools_while_down_and_replays_in_order(tmp_path: Path) -> None:
    sink = FlakySink()
    writer = DurableWriter(sink, Spool(tmp_path, 1 << 20), FixedClock(NOW), max_backoff_s=0.05)
    writer.write(_points(0, 2))
    sink.down = True
    writer.write(_points(2, 2))
    assert not writer.healthy
    writer.write(_points(4, 2))  # goes straight to the spool behind the backlog
    sink.down = False
    wait_for(lambda: writer.healthy, timeout=5)
    writer.write(_points(6, 1))
    writer.close()
    assert [p.ts_ns for p in sink.points] == list(range(7))


def test_backlog_from_a_previous_run_is_replayed_first(tmp_path: Path) -> None:
    Spool(tmp_path, 1 << 20).append(_points(0, 2), NOW)
    sink = FlakySink()
    writer = DurableWriter(sink, Spool(tmp_path, 1 << 20), FixedClock(NOW), max_backoff_s=0.05)
    writer.write(_points(2, 1))
    wait_for(lambda: writer.healthy, timeout=5)
    writer.close()
    assert [p.ts_ns for p in sink.points] == [0, 1, 2]


def test_incident_line() -> None:
    from gateway.incidents.model import Incident

    incident = Incident(
        id="INC-1", elevator_id="E1", kind="DOOR_LOCK_FAULT", severity="major",
        incident_class="fault", state="arrived", rule=None, source="phone", opened_at=NOW,
        deadline_at=NOW, warning_at=NOW, ack_deadline_at=NOW, updated_at=NOW,
        arrived_at=NOW.replace(minute=12), sla="breached",
    )  # fmt: skip
    point = incident_point(incident)
    assert point.line == (
        "incident,elevator_id=E1,kind=DOOR_LOCK_FAULT,severity=major "
        f'state="arrived",arrival_s=720.0,breached=true {point.ts_ns}'
    )


def test_spool_peek_skips_a_segment_dropped_behind_its_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_points(0, 2), NOW)
    spool.append(_points(2, 2), NOW)
    sorted(tmp_path.glob("*.seg"))[0].unlink()  # e.g. the size limit, racing the replayer
    _number, points = spool.peek()  # type: ignore[misc]
    assert [p.ts_ns for p in points] == [2, 3]
    assert spool.depth == 2


def test_refused_points_are_isolated_and_the_rest_written(tmp_path: Path) -> None:
    sink = FlakySink(poison=frozenset({3, 97}))
    refused: list[tuple[list[int], str]] = []
    writer = DurableWriter(
        sink, Spool(tmp_path, 1 << 20), FixedClock(NOW),
        on_refused=lambda points, answer: refused.append(([p.ts_ns for p in points], answer)),
    )  # fmt: skip
    writer.write(_points(0, 100))
    assert writer.healthy  # a refusal is not an outage
    assert [p.ts_ns for p in sink.points] == [n for n in range(100) if n not in (3, 97)]
    assert refused == [
        ([3], "HTTP 400: field type conflict"),
        ([97], "HTTP 400: field type conflict"),
    ]
    assert sink.requests <= 1 + 2 * 2 * 7  # halves down to each of two points: O(log n)
    writer.close()


class SlowSink(FlakySink):
    """A store slow to answer that takes several requests at once: the first three full
    requests wait at a barrier for each other, so requests sent one at a time would break
    it. A request starting at a point in `fail` is never answered (a timeout)."""

    concurrent_writes = 4

    def __init__(self, poison: frozenset[int] = frozenset(), fail: frozenset[int] = frozenset()):
        super().__init__(poison)
        self.fail = fail
        self.sizes: list[int] = []
        self._round = threading.Barrier(3, timeout=10)
        self._to_meet = 3
        self._lock = threading.Lock()

    def write(self, points: Sequence[Point]) -> None:
        with self._lock:
            self.sizes.append(len(points))
            meet = len(points) == 20_000 and self._to_meet > 0
            self._to_meet -= meet
        if meet:
            self._round.wait()
        with self._lock:
            if points[0].ts_ns in self.fail:
                raise SinkError("timed out")
            super().write(points)


def test_a_large_batch_goes_in_chunks_side_by_side(tmp_path: Path) -> None:
    """Batches that waited for a slow store are written in requests of at most 20,000 points,
    several at once: every point once, none refused for its size."""
    sink = SlowSink()
    writer = DurableWriter(sink, Spool(tmp_path, 1 << 30), FixedClock(NOW))
    writer.write(_points(0, 65_000))
    assert sorted(sink.sizes) == [5_000, 20_000, 20_000, 20_000]
    assert sorted(p.ts_ns for p in sink.points) == list(range(65_000))
    assert writer.healthy
    writer.close()


def test_a_chunk_the_store_fails_is_spooled_with_the_refused_ones_isolated(
    tmp_path: Path,
) -> None:
    """Side by side, one chunk refused (a poison point) and one not answered: the refused
    chunk's other points are written, the unanswered chunk spooled; nothing lost."""
    sink = SlowSink(poison=frozenset({20_005}), fail=frozenset({40_000}))
    spool = Spool(tmp_path, 1 << 30)
    writer, refused = _writer_noting_refusals(sink, spool, max_backoff_s=3600)
    writer.write(_points(0, 65_000))
    assert not writer.healthy
    writer.close()  # (its replays meet the same store: nothing changes)
    spooled = [p.ts_ns for _, batch in spool.oldest(10**6) for p in batch]
    assert {p.ts_ns for p in sink.points} == set(range(20_000)) | set(range(60_000, 65_000))
    assert sorted(spooled) == list(range(20_000, 60_000))  # the refused chunk goes with it
    assert refused == []  # isolated once the store answers, not while it is down


def test_a_spooled_segment_with_a_refused_point_does_not_block_the_ones_behind(
    tmp_path: Path,
) -> None:
    """Spooled during an outage, then refused point by point on replay: the poison goes to
    the dead letter, its neighbours and the segments behind it to the store, in order."""
    sink = FlakySink(poison=frozenset({4}))
    sink.down = True
    writer, refused = _writer_noting_refusals(sink, Spool(tmp_path, 1 << 20), max_backoff_s=0.05)
    writer.write(_points(0, 6))
    writer.write(_points(6, 3))
    sink.down = False
    wait_for(lambda: writer.healthy, timeout=5)
    writer.close()
    assert refused == [4]
    assert [p.ts_ns for p in sink.points] == [0, 1, 2, 3, 5, 6, 7, 8]


class _DownAfter(FlakySink):
    """Refuses one point, and goes down after `ok` successful writes."""

    def __init__(self, ok: int) -> None:
        super().__init__(poison=frozenset({1}))
        self.ok = ok

    def write(self, points: Sequence[Point]) -> None:
        self.down = self.down or len(self.points) >= self.ok
        super().write(points)


def test_going_down_mid_isolation_spools_only_what_was_not_written(tmp_path: Path) -> None:
    sink = _DownAfter(ok=2)
    spool = Spool(tmp_path, 1 << 20)
    writer = DurableWriter(sink, spool, FixedClock(NOW), max_backoff_s=0.05)
    writer.write(_points(0, 8))  # [0..3] refused -> [0,1] -> [0] written, [1] refused ...
    assert not writer.healthy
    assert spool.depth + len(sink.points) == 7  # nothing written twice, the poison apart
    sink.down, sink.ok = False, 10**9
    wait_for(lambda: writer.healthy, timeout=5)
    writer.close()
    assert [p.ts_ns for p in sink.points] == [0, 2, 3, 4, 5, 6, 7]


def test_spool_rewrite_keeps_the_segments_turn(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_points(0, 4), NOW)
    spool.append(_points(4, 2), NOW)
    number, _ = spool.peek()  # type: ignore[misc]
    spool.rewrite(number, _points(2, 2))
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.depth == 4
    assert [p.ts_ns for p in reopened.peek()[1]] == [2, 3]  # type: ignore[index]


def test_extra_fields_are_kept_as_a_json_string_field() -> None:
    """Contract §1: unknown extra fields are kept and never cause rejection."""
    plain = to_point(_frame("elevators/E1/status", status_frame("E1", 1, ts=TS)))
    assert "extra=" not in plain.line
    sent = status_frame("E1", 2, ts=TS, fw="2.1.0", cabin={"temp_c": 24.5, "note": 'a "b"'})
    line = to_point(_frame("elevators/E1/status", sent)).line
    field = line.split(",extra=", 1)[1].rsplit(" ", 1)[0]
    assert json.loads(json.loads(field)) == {
        "fw": "2.1.0",
        "cabin": {"temp_c": 24.5, "note": 'a "b"'},
    }
    event = to_point(
        _frame("elevators/E1/event", event_frame("E1", 3, "OVERSPEED", ts=TS, gw_hint=1))
    )
    assert ',extra="{\\"gw_hint\\":1}" ' in event.line
    assert (
        "extra="
        not in to_point(_frame("elevators/E1/event", event_frame("E1", 4, "OVERSPEED", ts=TS))).line
    )


def test_embedded_sink_prunes_beyond_its_retention_as_it_writes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    sink = EmbeddedSink(store, FixedClock(NOW), retention_s=86_400)
    day_ns = 86_400 * 10**9
    now_ns = int(NOW.timestamp() * 1e9)
    old = [Point("m", "E1", now_ns - 2 * day_ns + n, "old", 1, n) for n in range(3)]
    sink.write([*old, Point("m", "E1", now_ns, "new", 1, 3)])
    assert store.telemetry_lines("E1") == ["new"]
    store.close()


def test_replay_takes_several_segments_and_keeps_exactly_what_was_not_written(
    tmp_path: Path,
) -> None:
    """Three spooled segments replayed in one write; the store refuses a point and then goes
    down part way: the written segment is forgotten, the rest kept, nothing written twice."""
    sink = _DownAfter(ok=0)
    sink.poison = frozenset({5})
    sink.down = True
    spool = Spool(tmp_path, 1 << 20)
    writer, refused = _writer_noting_refusals(sink, spool, max_backoff_s=0.05)
    for start in (0, 4, 8):
        writer.write(_points(start, 4))
    sink.ok, sink.down = 4, False  # up for 4 points: 0-3, then down again at 4
    wait_for(lambda: spool.depth == 8, timeout=5)
    assert [p.ts_ns for p in sink.points] == [0, 1, 2, 3]
    sink.ok, sink.down = 10**9, False
    wait_for(lambda: writer.healthy, timeout=5)
    writer.close()
    assert refused == [5]
    assert [p.ts_ns for p in sink.points] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]

"""The pipeline and the incident service on a real SQLite store, without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.clock import FixedClock
from gateway.deadletter import DeadLetter
from gateway.frames import Frame, decode
from gateway.incidents.service import IncidentService, Policy
from gateway.incidents.sla import Limits
from gateway.ingest import AckToken, RawMessage
from gateway.pipeline import Pipeline
from gateway.ratelimit import RateLimiter
from gateway.rules import Alert
from gateway.spool import Spool
from gateway.store import Store, open_store
from gateway.tsdb import DurableWriter, EmbeddedSink
from tests.conftest import status_frame

NOW = datetime.now(UTC).replace(microsecond=0)


def _writer(store: Store, tmp_path: Path) -> DurableWriter:
    clock = FixedClock(NOW)
    return DurableWriter(EmbeddedSink(store, clock), Spool(tmp_path / "spool", 1 << 20), clock)


def _store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'g.db'}")


def test_a_failing_consumer_does_not_stop_ingestion(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer = _writer(store, tmp_path)
    published: list[tuple[str, bytes]] = []
    deadletter = DeadLetter(store, lambda t, p: published.append((t, p)), 100, 65536)

    def broken(frame: Frame) -> None:
        raise RuntimeError("bug in detection")

    pipeline = Pipeline(writer, deadletter, consumers=[broken])
    for seq in range(3):
        pipeline.process(
            RawMessage("elevators/P1/status", status_frame("P1", seq), NOW, AckToken(seq + 1, 1))
        )
    assert [a.mid for a in pipeline.flush()] == [1, 2, 3]
    assert len(store.telemetry_lines("P1")) == 3
    writer.close()


def test_the_configured_rate_limiter_is_the_one_used(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer = _writer(store, tmp_path)
    deadletter = DeadLetter(store, lambda t, p: None, 100, 65536)
    # A fresh limiter has no buckets: it must not be mistaken for no limiter at all.
    pipeline = Pipeline(writer, deadletter, limiter=RateLimiter(rate=1.0, burst=2.0))
    payloads = [status_frame("P1", seq) for seq in range(5)]  # within a second of device time
    for seq, payload in enumerate(payloads):
        pipeline.process(RawMessage("elevators/P1/status", payload, NOW, AckToken(seq + 1, 1)))
    pipeline.flush()
    assert len(store.telemetry_lines("P1")) == 2
    # Every refused frame keeps its bytes (it was acknowledged), the newest first.
    refused = store.dead_letters()
    assert [r["reason"] for r in refused] == ["rate_limited"] * 3
    assert [r["payload"] for r in refused] == payloads[:1:-1]
    writer.close()


def test_telemetry_received_before_the_incident_opened_is_not_evidence(tmp_path: Path) -> None:
    store = _store(tmp_path)
    service = IncidentService(store, Policy(Limits(1800, 1200, 180)))
    incident, created = service.report(
        elevator_id="P2",
        kind="entrapment",
        source="phone",
        reported_at=NOW,
        note=None,
        by="ana",
        now=NOW,
    )
    assert created
    # A frame stamped a second before the report, processed after it (it was queued).
    early = decode(
        "elevators/P2/status",
        status_frame("P2", 1, door="open", door_zone=True, occupied=False, mode="inspection"),
        NOW - timedelta(seconds=1),
    )
    assert isinstance(early, Frame)
    service.on_frame(early)
    after = service.get(incident.id)
    assert after.released_at is None and after.arrived_at is None
    late = decode(
        "elevators/P2/status",
        status_frame("P2", 2, door="open", door_zone=True, occupied=False, mode="inspection"),
        NOW + timedelta(seconds=5),
    )
    assert isinstance(late, Frame)
    service.on_frame(late)
    after = service.get(incident.id)
    assert after.released_at == NOW + timedelta(seconds=5)
    assert after.arrival_evidence == "telemetry"


def test_a_backlog_is_judged_on_the_device_clock_and_stored_in_full(tmp_path: Path) -> None:
    """1,000 frames a device buffered over 10,000 s of its own time, delivered in one burst:
    none is refused. The same 1,000 stamped within one second: the limit holds, and every
    refused frame is in the dead letter with its bytes and counted for its elevator."""
    store = _store(tmp_path)
    writer = _writer(store, tmp_path)
    deadletter = DeadLetter(store, lambda t, p: None, 10_000, 65536)
    pipeline = Pipeline(writer, deadletter, limiter=RateLimiter(rate=20.0, burst=600.0))
    start = NOW - timedelta(hours=3)
    for seq in range(1000):
        ts = (start + timedelta(seconds=10 * seq)).isoformat()
        raw = status_frame("B1", seq, ts=ts)
        pipeline.process(RawMessage("elevators/B1/status", raw, NOW, AckToken(seq + 1, 1)))
        burst = status_frame("B2", seq, ts=start.isoformat())
        pipeline.process(RawMessage("elevators/B2/status", burst, NOW, AckToken(seq + 1, 1)))
    pipeline.flush()
    assert len(store.telemetry_lines("B1")) == 1000
    assert len(store.telemetry_lines("B2")) == 600
    refused = [r for r in store.dead_letters(limit=1000) if r["elevator_id"] == "B2"]
    assert len(refused) == 400 and {r["reason"] for r in refused} == {"rate_limited"}
    assert sorted(json.loads(r["payload"])["seq"] for r in refused) == list(range(600, 1000))
    assert pipeline.rate_limited == {"B2": 400}
    writer.close()


def _alert(action: str, at: datetime, rule: str = "trapped_between_floors") -> Alert:
    return Alert(action, "R1", rule, "entrapment", "critical", "entrapment", at)  # type: ignore[arg-type]


def test_a_replayed_detection_changes_nothing_on_the_incident(tmp_path: Path) -> None:
    """After kill -9 the journal replays the frames not yet acknowledged and the rules detect
    again, a few µs apart: the open incident keeps its clocks and its timeline."""
    store = _store(tmp_path)
    service = IncidentService(store, Policy(Limits(1800, 1200, 180)))
    service.on_alert(_alert("fire", NOW))
    (opened,) = store.list_incidents(elevator_id="R1")
    service.on_alert(_alert("fire", NOW - timedelta(microseconds=175)))  # the replay
    service.on_alert(_alert("fire", NOW, rule="alarm_held"))  # another rule: recorded
    service.on_alert(_alert("fire", NOW, rule="alarm_held"))  # ... once
    service.on_alert(_alert("clear", NOW + timedelta(seconds=5)))
    service.on_alert(_alert("clear", NOW + timedelta(seconds=5)))  # replayed clear
    (after,) = store.list_incidents(elevator_id="R1")
    assert (after.opened_at, after.deadline_at) == (opened.opened_at, opened.deadline_at)
    assert [e.by for e in after.timeline] == [
        "rule trapped_between_floors",
        "rule alarm_held",
        "telemetry",
    ]
    # A detection the incident has not seen yet (after its history) still joins it.
    service.on_alert(_alert("fire", NOW + timedelta(seconds=60)))
    (later,) = store.list_incidents(elevator_id="R1")
    assert len(later.timeline) == 4 and later.opened_at == opened.opened_at

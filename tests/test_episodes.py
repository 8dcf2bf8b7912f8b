"""Episodes recorded from the stream (gateway/episodes.py): the tracker over frames, pure; the
recorder against a real store (SQLite and PostgreSQL), across a restart."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import count

from gateway.episodes import Recorder, Tracker
from gateway.frames import Frame, decode
from gateway.store import open_store
from gateway.store.records import Episode
from tests.conftest import event_frame, status_frame

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
_seq = count()


def status(elevator_id: str, at: datetime, mode: str = "normal", power: str = "mains") -> Frame:
    """A status frame sent at `at` (device time) and received then."""
    payload = status_frame(elevator_id, next(_seq), ts=at.isoformat(), mode=mode, power=power)
    frame = decode(f"elevators/{elevator_id}/status", payload, at)
    assert isinstance(frame, Frame), frame
    return frame


def alarm_test(elevator_id: str, at: datetime) -> Frame:
    payload = event_frame(elevator_id, next(_seq), "ALARM_TEST", ts=at.isoformat())
    frame = decode(f"elevators/{elevator_id}/event", payload, at)
    assert isinstance(frame, Frame), frame
    return frame


def online(elevator_id: str, at: datetime, up: bool) -> Frame:
    frame = decode(f"elevators/{elevator_id}/online", b"1" if up else b"0", at)
    assert isinstance(frame, Frame), frame
    return frame


def track(frames: Iterable[Frame], tracker: Tracker | None = None) -> list[Episode]:
    """Every episode as the store would hold it after these frames (a change replaces the row
    of the same elevator, kind and start), by elevator and start."""
    tracker = tracker or Tracker()
    rows: dict[tuple[str, str, datetime], Episode] = {}
    for frame in frames:
        for e in tracker.observe(frame):
            rows[e.elevator_id, e.kind, e.started_at] = e
    return sorted(rows.values(), key=lambda e: (e.elevator_id, e.started_at, e.kind))


def test_a_periodic_frame_changes_nothing() -> None:
    tracker = Tracker()
    assert tracker.observe(status("E1", T0)) == []
    assert tracker.observe(status("E1", T0 + MIN, mode="fire")) == []
    [opened] = tracker.observe(status("E1", T0 + 2 * MIN, mode="maintenance"))
    assert opened == Episode("E1", "maintenance", T0 + 2 * MIN, None, T0 + 2 * MIN)
    # the next frames in the mode write nothing, until `last_seen_at` is a minute behind
    assert tracker.observe(status("E1", T0 + 2.5 * MIN, mode="maintenance")) == []
    [seen] = tracker.observe(status("E1", T0 + 3 * MIN, mode="maintenance"))
    assert seen.last_seen_at == T0 + 3 * MIN and seen.ended_at is None


def test_sessions_spans_and_their_ends() -> None:
    frames = [
        status("E1", T0, mode="maintenance"),
        status("E1", T0 + 4 * MIN, mode="maintenance"),
        status("E1", T0 + 6 * MIN, mode="inspection"),  # switched: one ends, one starts
        status("E1", T0 + 10 * MIN),
        status("E1", T0 + 60 * MIN, mode="inspection"),
        status("E1", T0 + 64 * MIN, mode="inspection"),
        status("E1", T0 + 80 * MIN, mode="inspection"),  # 16 min silent: ends at 64
        status("E1", T0 + 81 * MIN, mode="out_of_service", power="battery"),
        status("E1", T0 + 80 * MIN, mode="normal"),  # late (reordered): ignored
        status("E1", T0 + 90 * MIN),
        online("E2", T0, up=False),
        online("E2", T0 + 30 * MIN, up=True),
        online("E2", T0 + 40 * MIN, up=False),
    ]
    assert [(e.elevator_id, e.kind, e.started_at, e.ended_at) for e in track(frames)] == [
        ("E1", "maintenance", T0, T0 + 6 * MIN),
        ("E1", "inspection", T0 + 6 * MIN, T0 + 10 * MIN),
        ("E1", "inspection", T0 + 60 * MIN, T0 + 64 * MIN),
        ("E1", "inspection", T0 + 80 * MIN, T0 + 81 * MIN),
        ("E1", "out_of_service", T0 + 81 * MIN, T0 + 90 * MIN),
        ("E1", "power_loss", T0 + 81 * MIN, T0 + 90 * MIN),
        ("E2", "offline", T0, T0 + 30 * MIN),
        ("E2", "offline", T0 + 40 * MIN, None),
    ]


def test_recorded_across_a_restart_as_one_session(store_url: str, prefix: str) -> None:
    """The recorder writes per batch; a new one (a restart) goes on from the store's open
    episodes, and a frame replayed after the crash rewrites the same row."""
    r1, r2 = f"{prefix}R1", f"{prefix}R2"
    store = open_store(store_url)
    before = Recorder(store)
    for minute in range(0, 21):
        before.observe(status(r1, T0 + minute * MIN, mode="maintenance"))
    before.flush()
    before.observe(status(r1, T0 + 21 * MIN, mode="maintenance"))  # never flushed: lost
    after = Recorder(store)  # the restart
    for minute in range(21, 41):  # the broker redelivers what was not acknowledged, and more
        after.observe(status(r1, T0 + minute * MIN, mode="maintenance"))
    after.observe(status(r1, T0 + 41 * MIN))
    after.observe(online(r2, T0, up=False))
    after.flush()

    def mine(episodes: list[Episode]) -> list[Episode]:
        return [e for e in episodes if e.elevator_id.startswith(prefix)]

    assert mine(store.episodes(T0, T0 + 60 * MIN)) == [
        Episode(r1, "maintenance", T0, T0 + 41 * MIN, T0 + 41 * MIN),
        Episode(r2, "offline", T0, None, T0),
    ]
    assert mine(store.open_episodes()) == [Episode(r2, "offline", T0, None, T0)]
    assert {e for e in store.heard_since(T0 + MIN) if e.startswith(prefix)} == {r1}
    store.close()


def test_an_alarm_self_test_is_a_moment() -> None:
    cleared = decode(
        "elevators/A1/event", event_frame("A1", 2, "ALARM_TEST", "cleared", ts=T0.isoformat()), T0
    )
    assert isinstance(cleared, Frame)
    assert track([alarm_test("A1", T0), cleared]) == [Episode("A1", "alarm_test", T0, T0, T0)]

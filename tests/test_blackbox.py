"""The black box: every status frame it packs comes back with the fields it was sent with
(speed to the mm/s, load to a hundredth of a percent), oldest first, and only for its
window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.frames import Frame, StatusBody, decode
from gateway.incidents.blackbox import HELD, WINDOW, BlackBox

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
AHEAD, LATE = timedelta(hours=23), timedelta(days=29)

bodies = st.fixed_dictionaries(
    {
        "floor": st.integers(-50, 300),
        "moving": st.booleans(),
        "direction": st.sampled_from(["up", "down", "none"]),
        "speed_mps": st.sampled_from([0.0, 0.001, 0.5, 1.75, 2.5, 17.333, 30.0]),
        "door": st.sampled_from(["open", "opening", "closed", "closing", "fault"]),
        "door_zone": st.booleans(),
        "occupied": st.booleans(),
        "load_pct": st.sampled_from([0.0, 0.01, 30.0, 33.33, 99.5, 150.0]),
        "mode": st.sampled_from(
            ["normal", "inspection", "maintenance", "fire", "independent", "out_of_service"]
        ),
        "alarm_button": st.booleans(),
        "power": st.sampled_from(["mains", "battery", "off"]),
        "safety_circuit": st.sampled_from(["closed", "open"]),
    }
)


def _frame(seq: int, fields: dict, at: datetime, ts: datetime | None = None) -> Frame:
    sent_at = (ts or at).isoformat()
    body = {"v": 1, "elevator_id": "BB1", "seq": seq, "boot": 1, "ts": sent_at, **fields}
    frame = decode("elevators/BB1/status", json.dumps(body).encode(), at)
    assert isinstance(frame, Frame) and isinstance(frame.body, StatusBody)
    return frame


@given(st.lists(bodies, min_size=1, max_size=5))
def test_every_field_comes_back_as_sent(sent: list[dict]) -> None:
    box = BlackBox()
    for seq, fields in enumerate(sent):
        box.record(_frame(seq, fields, NOW))
    got = [f["body"] for f in box.recent("BB1", NOW)]
    assert [g["seq"] for g in got] == list(range(len(sent)))
    for fields, body in zip(sent, got, strict=True):
        assert {k: body[k] for k in fields} == fields


def test_only_the_window_is_kept() -> None:
    box = BlackBox()
    start = NOW - WINDOW - timedelta(seconds=30)
    for seq in range(16):
        box.record(_frame(seq, {**_fields(), "floor": seq}, start + timedelta(seconds=10 * seq)))
    kept = box.recent("BB1", start + timedelta(seconds=150))
    assert [f["body"]["floor"] for f in kept] == list(range(3, 16))


def _fields() -> dict:
    return {
        "floor": 0, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
        "door_zone": True, "occupied": False, "load_pct": 0.0, "mode": "normal",
        "alarm_button": False, "power": "mains", "safety_circuit": "closed",
    }  # fmt: skip


steps = st.tuples(
    # µs since the frame before; < 0: received_at went back; 2**30: past a step's field
    st.integers(-2_000_000, 40_000_000) | st.sampled_from([2**30 - 1, 2**30]),
    # the device clock's jump, µs (a step holds -2**23 to 2**23 - 1)
    st.sampled_from([0, 1, -999, 2**23 - 1, 2**23, -(2**23), -(2**23) - 1, 2**31, -(10**12)]),
    # seq step (a step holds -128 to 127; a reboot restarts it)
    st.sampled_from([1, 0, 5, -3, 127, 128, -128, -129, 40_000, 2**62]),
)


# A new status: the whole of it, or a few of its flags and choices (a door, a passenger).
changes = bodies | st.fixed_dictionaries(
    {},
    optional={
        "moving": st.booleans(),
        "door": st.sampled_from(["open", "closed", "fault"]),
        "occupied": st.booleans(),
        "mode": st.sampled_from(["normal", "maintenance"]),
    },
)


@given(st.lists(st.tuples(steps, st.none() | changes), min_size=1, max_size=40))
def test_any_sequence_of_frames_comes_back_as_a_plain_list_would_keep_it(
    frames: list[tuple[tuple[int, int, int], dict | None]],
) -> None:
    """Clocks that jump, received_at going back, seq restarting, the status as before (None),
    changed in part or new: whatever step the compact records cannot hold is written in
    full, and the window is the same as a list's."""
    box, sent = BlackBox(), []
    rx, offset, seq, fields = NOW - timedelta(minutes=10), timedelta(0), 100, _fields()
    for (d_rx, d_offset, d_seq), new_fields in frames:
        rx += timedelta(microseconds=d_rx)
        # within what decoding accepts: a day ahead, 30 days behind
        offset = min(max(offset + timedelta(microseconds=d_offset), -LATE), AHEAD)
        seq = min(max(seq + d_seq, 0), 2**63 - 1)
        fields = {**fields, **(new_fields or {})}
        sent.append((rx, rx + offset, seq, fields))
        box.record(_frame(seq, fields, rx, ts=rx + offset))
    now = max(at for at, *_ in sent)
    kept = sorted((s for s in sent if s[0] >= now - WINDOW), key=lambda s: s[0])
    got = box.recent("BB1", now)
    assert len(got) == len(kept)
    for g, sent_frame in zip(got, kept, strict=True):
        _assert_same(g, *sent_frame)
    _assert_same(box.last("BB1"), *sent[-1])  # type: ignore[arg-type]


def _assert_same(got: dict, at: datetime, ts: datetime, seq: int, fields: dict) -> None:
    assert abs(got["received_at"] - at) <= timedelta(microseconds=1)
    assert abs(datetime.fromisoformat(got["body"]["ts"]) - ts) <= timedelta(microseconds=1)
    assert got["body"]["seq"] == seq
    assert {k: got["body"][k] for k in fields} == fields


def test_frames_past_the_hold_are_dropped() -> None:
    """Asked for a window long before its newest frame, the box has only what it holds."""
    box = BlackBox()
    start = NOW - timedelta(hours=1)
    for seq in range(60):
        box.record(_frame(seq, _fields(), start + timedelta(seconds=10 * seq)))
    newest = start + timedelta(seconds=590)
    oldest_kept = box.recent("BB1", start + WINDOW)[0]["received_at"]
    assert newest - HELD <= oldest_kept <= newest - WINDOW

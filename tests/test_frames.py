"""decode(): every rejection reason, and no byte string makes it raise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames import REASONS, EventBody, Frame, Rejected, StatusBody, as_sent, decode
from tests.conftest import event_frame, status_frame

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
TOPIC = "elevators/E-1/status"


def _status(**changes: object) -> bytes:
    body = json.loads(status_frame("E-1", 5)) | {"ts": NOW.isoformat()} | changes
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def _nested(levels: int) -> dict[str, object]:
    detail: dict[str, object] = {}
    for _ in range(levels - 1):
        detail = {"a": detail}
    return detail


def _reason(topic: str, payload: bytes) -> str:
    result = decode(topic, payload, NOW)
    assert isinstance(result, Rejected), result
    assert result.reason in REASONS
    assert result.received_at == NOW and result.payload == payload
    return result.reason


def test_valid_status_keeps_extra_fields() -> None:
    payload = _status(vendor_temp_c=41.5, vendor_log={"a": {"b": [1, 2]}})
    frame = decode(TOPIC, payload, NOW)
    assert isinstance(frame, Frame) and isinstance(frame.body, StatusBody)
    assert (frame.kind, frame.elevator_id, frame.received_at) == ("status", "E-1", NOW)
    assert as_sent(frame) == json.loads(payload)
    assert as_sent(frame)["vendor_temp_c"] == 41.5
    assert frame.body.ts == NOW


def test_valid_event_with_vendor_code_and_detail() -> None:
    payload = event_frame("E-1", 6, "X_VFD_OVERHEAT", detail={"temp": 90})
    frame = decode("elevators/E-1/event", payload, datetime.now(UTC))
    assert isinstance(frame, Frame) and isinstance(frame.body, EventBody)
    assert frame.body.code == "X_VFD_OVERHEAT" and frame.body.detail == {"temp": 90}


@pytest.mark.parametrize(("payload", "online"), [(b"1", True), (b"0", False)])
def test_online(payload: bytes, online: bool) -> None:
    frame = decode("elevators/E-1/online", payload, NOW)
    assert isinstance(frame, Frame) and frame.online is online and frame.body is None


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("elevators/E 1/status", _status(), "bad_topic"),
        ("elevators/E-1/status/extra", _status(), "bad_topic"),
        ("lifts/E-1/status", _status(), "bad_topic"),
        ("elevators/E-1/telemetry", _status(), "bad_topic"),
        (TOPIC, b"x" * (64 * 1024 + 1), "oversized"),
        (TOPIC, b"{nope", "bad_json"),
        (TOPIC, b"\xff\xfe\xfd", "bad_encoding"),
        (TOPIC, b"", "bad_json"),
        (TOPIC, b"[1, 2]", "not_an_object"),
        (TOPIC, _status(floor=...), "missing_field"),
        (TOPIC, _status(seq="5"), "wrong_type"),
        (TOPIC, _status(moving=1), "wrong_type"),
        (TOPIC, _status(door="ajar"), "unknown_enum"),
        (TOPIC, _status(mode="party"), "unknown_enum"),
        (TOPIC, _status(load_pct=150.5), "out_of_range"),
        (TOPIC, _status(speed_mps=-1), "out_of_range"),
        (TOPIC, _status(seq=-1), "out_of_range"),
        (TOPIC, _status(seq=2**64), "out_of_range"),
        (TOPIC, _status(v=2), "unsupported_version"),
        (TOPIC, _status(ts="2026-11-27T01:00:00"), "bad_timestamp"),
        (TOPIC, _status(ts="yesterday"), "bad_timestamp"),
        (TOPIC, _status(ts=(NOW + timedelta(days=2)).isoformat()), "timestamp_out_of_range"),
        (TOPIC, _status(ts=(NOW - timedelta(days=31)).isoformat()), "timestamp_out_of_range"),
        (TOPIC, _status(elevator_id="E-2"), "spoofed_id"),
        ("elevators/E-1/event", event_frame("E-1", 1, "NOT_A_CODE"), "unknown_enum"),
        ("elevators/E-1/event", event_frame("E-1", 1, "OVERSPEED", state="maybe"), "unknown_enum"),
        ("elevators/E-1/online", b"yes", "bad_online_payload"),
        (TOPIC, _status(elevator_id="E\u00011"), "bad_id"),
        (TOPIC, _status(elevator_id="E-1\n"), "bad_id"),
        (TOPIC, _status(elevator_id="E" * 65), "bad_id"),
        (TOPIC, b'{"v": 1, "elevator_id": "E\xff1"}', "bad_encoding"),
        (TOPIC, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "too_deep"),
        ("elevators/E-1/event", event_frame("E-1", 1, "X_A", detail=_nested(17)), "too_deep"),
        (
            TOPIC,
            _status(speed_mps=1).replace(b'"speed_mps": 1', b'"speed_mps": 1e400'),
            "out_of_range",
        ),
    ],
)
def test_rejection_reasons(topic: str, payload: bytes, reason: str) -> None:
    assert _reason(topic, payload) == reason


def test_nesting_up_to_the_limit_is_fine() -> None:
    payload = event_frame("E-1", 1, "X_A", detail=_nested(16))
    assert isinstance(decode("elevators/E-1/event", payload, datetime.now(UTC)), Frame)


def test_nan_and_infinity_are_not_json() -> None:
    text = _status().decode().replace('"speed_mps": 0.0', '"speed_mps": NaN')
    assert _reason(TOPIC, text.encode()) == "bad_json"
    text = _status().decode().replace('"load_pct": 0.0', '"load_pct": Infinity')
    assert _reason(TOPIC, text.encode()) == "bad_json"


def test_rejection_detail_names_the_field() -> None:
    result = decode(TOPIC, _status(door="ajar"), NOW)
    assert isinstance(result, Rejected) and result.detail.startswith("door:")


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=2048), kind=st.sampled_from(["status", "event", "online", "x"]))
def test_no_byte_string_makes_decode_raise(payload: bytes, kind: str) -> None:
    assert isinstance(decode(f"elevators/E-1/{kind}", payload, NOW), Frame | Rejected)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(list(json.loads(_status()))), _json_values, max_size=4)
)
def test_mutated_frames_are_frames_or_rejections(changes: dict[str, object]) -> None:
    """Near-valid bodies (real field names, random values) exercise the validator deeply."""
    body = json.loads(_status()) | changes
    result = decode(TOPIC, json.dumps(body).encode(), NOW)
    assert isinstance(result, Frame | Rejected)
    if isinstance(result, Rejected):
        assert result.reason in REASONS

"""Device profiles without a broker: loading and refusing files, the packaged cases, the
mapping, fault sets to events (and their save across a restart), the pipeline hook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gateway.cli import app
from gateway.clock import FixedClock
from gateway.deadletter import DeadLetter
from gateway.frames import REASONS, EventBody, Frame, Rejected, StatusBody, as_sent
from gateway.ingest import AckToken, RawMessage
from gateway.pipeline import Pipeline
from gateway.profiles import MappedFrame, ProfileError, Profiles, load_profiles
from gateway.profiles.cases import run_cases
from gateway.profiles.faults import FaultSets
from gateway.spool import Spool
from gateway.store import open_store
from gateway.tsdb import DurableWriter, EmbeddedSink

RX = datetime(2026, 11, 27, 1, 15, 5, tzinfo=UTC)
TOPIC = "lift/L1/data"
PACKAGED = load_profiles()


def lift(seq: int = 1, faults: list[Any] | None = None, boot: int = 3, **status: Any) -> dict:
    """A lift-numeric payload of an idle car at floor 3, changed by `status`."""
    return {
        "regCode": "L1", "seqNo": seq, "bootId": boot, "time": "2026-11-27 09:15:02",
        "status": {"floor": 3, "runState": 0, "direction": 0, "doorState": 0,
                   "levelState": 1, "hasPerson": 0, "powerSource": 0, "serviceMode": 0,
                   "alarmButton": 0, "speed": 0, "load": 0, "safetyCircuit": 0, **status},
        "faults": faults or [],
    }  # fmt: skip


def _bytes(payload: dict) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return Profiles.load()


def _events(frames: Any) -> list[tuple[str, str]]:
    return [(f.body.code, f.body.state) for f in frames]


# -- the packaged profiles ---------------------------------------------------------------------
def test_packaged_profiles_pass_their_cases() -> None:
    results = run_cases(load_profiles())
    assert {r.profile for r in results} == {"native", "lift-numeric"}
    assert [r.problems for r in results if not r.passed] == []
    assert len(results) >= 10


def test_a_case_that_does_not_hold_fails(tmp_path: Path) -> None:
    [lift_numeric] = [p for p in load_profiles() if p.name == "lift-numeric"]
    case = lift_numeric.tests[0]
    wrong = case.messages[0].model_copy(update={"frames": ({"kind": "status", "floor": 4},)})
    broken = lift_numeric.model_copy(
        update={"tests": (case.model_copy(update={"messages": (wrong,)}),)}
    )
    [result] = run_cases([broken])
    assert result.problems == ("message 1: frame 1: floor: expected 4, got 3",)


def test_cli_runs_the_cases_and_checks_the_files() -> None:
    runner = CliRunner()
    tested = runner.invoke(app, ["profiles", "test"])
    assert tested.exit_code == 0, tested.output
    assert "0 failed" in tested.output
    checked = runner.invoke(app, ["profiles", "check"])
    assert checked.exit_code == 0 and "ok lift-numeric" in checked.output


def test_lift_numeric_maps_every_field(profiles: Profiles) -> None:
    payload = lift(
        seq=9, floor=-2, runState=1, direction=2, doorState=3, levelState=0, hasPerson=1,
        powerSource=1, serviceMode=1, alarmButton=1, speed=1.75, load=40.5, safetyCircuit=1,
    )  # fmt: skip
    frame = profiles.decode(TOPIC, _bytes(payload), RX)
    assert isinstance(frame, MappedFrame) and isinstance(frame.body, StatusBody)
    assert frame.body == StatusBody(
        v=1, elevator_id="L1", seq=9, boot=3,
        ts=datetime(2026, 11, 27, 1, 15, 2, tzinfo=UTC),
        floor=-2, moving=True, direction="down", speed_mps=1.75, door="closing",
        door_zone=False, occupied=True, load_pct=40.5, mode="inspection", alarm_button=True,
        power="battery", safety_circuit="open",
    )  # fmt: skip
    assert frame.lag_s == 3.0
    assert profiles.elevator_of(TOPIC) == "L1"
    assert profiles.elevator_of("lift/L1/other") is None


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        (lambda p: p["status"].pop("floor"), "missing_field", "status.floor"),
        (lambda p: p.pop("status"), "missing_field", "status"),
        (lambda p: p["status"].update(doorState=9), "unknown_enum", "status.doorState"),
        (lambda p: p["status"].update(runState="1"), "wrong_type", "status.runState"),
        (lambda p: p["status"].update(floor=999), "out_of_range", "status.floor"),
        (lambda p: p["status"].update(load=151), "out_of_range", "status.load"),
        (lambda p: p.update(time="27/11/2026 09:15"), "bad_timestamp", "time"),
        (lambda p: p.update(time="2016-11-27 09:15:02"), "timestamp_out_of_range", "time"),
        (lambda p: p.update(regCode="L2"), "spoofed_id", "regCode"),
        (lambda p: p.update(seqNo=-1), "out_of_range", "seqNo"),
        (lambda p: p.update(faults=[1.5]), "wrong_type", "faults"),
        (lambda p: p.update(faults=list(range(65))), "out_of_range", "faults"),
    ],
)
def test_a_payload_that_does_not_fit_is_rejected_naming_the_path(
    profiles: Profiles, change: Any, reason: str, path: str
) -> None:
    payload = lift()
    change(payload)
    result = profiles.decode(TOPIC, _bytes(payload), RX)
    assert isinstance(result, Rejected)
    assert (result.reason, result.elevator_id) == (reason, "L1")
    assert result.detail.startswith(f"profile lift-numeric: {path}"), result.detail


def test_unclaimed_topics_and_native_frames_take_the_contract_path(profiles: Profiles) -> None:
    rejected = profiles.decode("lift/bad id/data", _bytes(lift()), RX)
    assert isinstance(rejected, Rejected) and rejected.reason == "bad_topic"
    native = profiles.decode("elevators/L1/online", b"1", RX)
    assert isinstance(native, Frame) and native.online is True
    assert profiles.derive(native) == ()


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        # a valid frame with one value replaced by anything JSON
        st.tuples(
            st.sampled_from(
                [
                    "regCode",
                    "seqNo",
                    "bootId",
                    "time",
                    "status",
                    "faults",
                    *(f"status.{k}" for k in lift()["status"]),
                ]
            ),
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=30)
            | st.lists(st.integers() | st.text(max_size=5), max_size=5),
        ).map(lambda kv: _replaced(*kv)),
    )
)
def test_no_payload_makes_a_profile_raise(payload: bytes) -> None:
    profiles = Profiles(PACKAGED)
    result = profiles.decode(TOPIC, payload, RX)
    if isinstance(result, Rejected):
        assert result.reason in REASONS and "profile lift-numeric: " in result.detail
    else:
        assert isinstance(result, MappedFrame)
        for event in profiles.derive(result):
            assert isinstance(event.body, EventBody)


def _replaced(key: str, value: Any) -> bytes:
    payload = lift()
    *parents, leaf = key.split(".")
    target = payload
    for part in parents:
        target = target[part]
    target[leaf] = value
    return _bytes(payload)


# -- fault sets to events --------------------------------------------------------------------
def test_fault_sets_raise_and_clear_once_in_frame_order(profiles: Profiles) -> None:
    profiles = Profiles(profiles.profiles)

    def events(seq: int, faults: list[int], boot: int = 3) -> list[tuple[str, str]]:
        frame = profiles.decode(TOPIC, _bytes(lift(seq, faults, boot)), RX)
        assert isinstance(frame, MappedFrame)
        return _events(profiles.derive(frame))

    assert events(1, [7]) == [("ENTRAPMENT", "raised")]
    assert events(2, [8, 7]) == []  # both numbers are ENTRAPMENT: still active
    assert events(2, []) == []  # a redelivery of seq 2 with another set: not newer
    assert events(1, []) == []  # late
    assert events(3, [14, 15]) == [
        ("X_LANDING_BUTTON_STUCK", "raised"),
        ("X_ABNORMAL_SPEED", "raised"),
        ("ENTRAPMENT", "cleared"),
    ]
    assert events(0, [], boot=4) == [
        ("X_LANDING_BUTTON_STUCK", "cleared"),
        ("X_ABNORMAL_SPEED", "cleared"),
    ]  # a reboot starts seq again
    assert events(9, [1], boot=3) == []  # a late frame from before the reboot
    assert events(1, [1], boot=4) == [("OVERTRAVEL_TOP", "raised")]


def test_fault_sets_survive_a_restart_through_the_saved_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    first = Profiles(load_profiles(), path)
    frame = first.decode(TOPIC, _bytes(lift(1, [4])), RX)
    assert _events(first.derive(frame)) == [("DOOR_OPEN_WHILE_MOVING", "raised")]
    snapshot = first.faults.take_snapshot()
    assert snapshot is not None and first.faults.take_snapshot() is None  # nothing new
    first.faults.save(snapshot)

    again = Profiles(load_profiles(), path)
    assert again.faults.active("L1") == {"DOOR_OPEN_WHILE_MOVING": (4,)}
    still = again.decode(TOPIC, _bytes(lift(2, [4])), RX)
    assert _events(again.derive(still)) == []
    gone = again.decode(TOPIC, _bytes(lift(3, [])), RX)
    assert _events(again.derive(gone)) == [("DOOR_OPEN_WHILE_MOVING", "cleared")]
    assert FaultSets(tmp_path / "none.json").active("L1") == {}


def test_the_pipeline_dedups_a_mapped_frame_and_stores_its_events(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    clock = FixedClock(RX)
    writer = DurableWriter(EmbeddedSink(store, clock), Spool(tmp_path / "spool", 1 << 20), clock)
    deadletter = DeadLetter(store, lambda _t, _p: None, 100, 65536)
    seen: list[Frame] = []
    pipeline = Pipeline(writer, deadletter, consumers=[seen.append], profiles=Profiles.load())
    messages = [lift(1, [4]), lift(1, [4]), lift(2, []), {"regCode": "L1"}]
    for n, payload in enumerate(messages, 1):
        pipeline.process(RawMessage(TOPIC, _bytes(payload), RX, AckToken(n, 1)))
    assert [a.mid for a in pipeline.flush()] == [1, 2, 3, 4]
    assert [(f.kind, f.body.seq) for f in seen] == [  # the redelivery of seq 1: nothing
        ("status", 1), ("event", 1), ("status", 2), ("event", 2)
    ]  # fmt: skip
    lines = store.telemetry_lines("L1")
    assert len(lines) == 4
    assert any("code=DOOR_OPEN_WHILE_MOVING,state=cleared" in line for line in lines)
    [dead] = store.dead_letters()
    assert (dead["reason"], dead["detail"]) == (
        "missing_field",
        "profile lift-numeric: seqNo: missing",
    )
    writer.close()


def test_faults_raised_by_one_frame_are_each_stored_once(tmp_path: Path) -> None:
    """Two faults in one frame are two events sharing the frame's seq: the embedded store's
    exactly-once (elevator, boot, seq) must not take the second for a copy of the first."""
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    clock = FixedClock(RX)
    writer = DurableWriter(EmbeddedSink(store, clock), Spool(tmp_path / "spool", 1 << 20), clock)
    deadletter = DeadLetter(store, lambda _t, _p: None, 100, 65536)
    pipeline = Pipeline(writer, deadletter, profiles=Profiles.load())
    for n in (1, 2):  # the second delivery of the same frame adds nothing
        pipeline.process(RawMessage(TOPIC, _bytes(lift(1, [4, 9])), RX, AckToken(n, 1)))
    pipeline.flush()
    events = [line for line in store.telemetry_lines("L1") if line.startswith("elevator_event")]
    assert sorted(line.split(",")[2] for line in events) == [
        "code=DOOR_OPEN_WHILE_MOVING", "code=POWER_FAILURE",
    ]  # fmt: skip
    writer.close()


# -- refusing bad profiles -------------------------------------------------------------------
GOOD = (
    Path(__file__).resolve().parent.parent / "device_profiles" / "lift-numeric.yaml"
).read_text()


def _write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("power: {path: status.powerSource, map: {0: mains, 1: battery, 2: \"off\"}}",
         "power: {path: status.powerSource, map: {0: mains, 1: battery, 2: off}}",
         "power: False is not a valid value"),
        ("  floor: status.floor\n", "  floor: status.floor\n  lift_car: status.car\n",
         "not contract status fields: ['lift_car']"),
        ("  floor: status.floor\n", "", "missing: ['floor']"),
        ("topic: lift/{elevator_id}/data", "topic: lift/+/data", "{elevator_id} as one whole"),
        ("    4: DOOR_OPEN_WHILE_MOVING", "    4: DOOR_OPEN", "unknown fault code 'DOOR_OPEN'"),
        ("ts: {path: time, format: \"%Y-%m-%d %H:%M:%S\", zone: Asia/Shanghai}",
         "ts: {path: time, format: \"%Y-%m-%d %H:%M:%S\"}", "needs a zone"),
        ("ts: {path: time, format: \"%Y-%m-%d %H:%M:%S\", zone: Asia/Shanghai}",
         "ts: {path: time, format: \"%Y-%m-%d %H:%M:%S\", zone: Mars/Olympus}",
         "unknown time zone"),
        ("name: lift-numeric", "name: lift-numeric\nvendor: acme", "vendor: unknown field"),
    ],
)  # fmt: skip
def test_a_bad_profile_is_refused_with_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new).replace("name: lift-numeric", "name: mine")
    text = text.replace("lift/{elevator_id}/data", "mine/{elevator_id}/data")
    directory = _write(tmp_path, text)
    with pytest.raises(ProfileError) as refused:
        load_profiles(directory)
    [error] = refused.value.errors
    assert error.startswith(f"{directory / 'mine.yaml'}:") and message in error, error
    line = int(error.split(":")[1])
    assert text.splitlines()[line - 1].strip(), error  # points at a line of the profile


def test_clashes_and_yaml_errors_name_the_file(tmp_path: Path) -> None:
    directory = _write(tmp_path, GOOD)  # lift-numeric again: name and topic taken
    _write(tmp_path, "name: broken\n  description: [", "broken.yaml")
    with pytest.raises(ProfileError) as refused:
        load_profiles(directory)
    errors = "\n".join(refused.value.errors)
    assert "profile name 'lift-numeric' is taken" in errors
    assert "topic 'lift/+/data' is claimed" in errors
    assert f"{directory / 'broken.yaml'}:2: YAML" in errors


def test_a_path_read_as_two_types_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("name: lift-numeric", "name: mine").replace("lift/{", "mine/{")
    text = text.replace("floor: status.floor", "floor: status.runState")
    with pytest.raises(ProfileError, match=r"status\.runState is read as two different types"):
        Profiles.load(_write(tmp_path, text))


def test_profiles_check_cli_reports_file_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("name: lift-numeric", "name: mine").replace("lift/{", "mine/{")
    text = text.replace("speed_mps: status.speed", "speed_mps: {path: status.speed, scale: x}")
    directory = _write(tmp_path, text)
    result = CliRunner().invoke(app, ["profiles", "check", str(directory)])
    assert result.exit_code == 1
    line = _line_of(text, "speed_mps:")
    assert f"mine.yaml:{line}: status.speed_mps.scale" in result.output.replace("\n", "")


def test_a_scaled_field_is_checked_against_the_contract_after_scaling(tmp_path: Path) -> None:
    text = GOOD.replace("name: lift-numeric", "name: mine").replace("lift/{", "mine/{")
    text = text.replace("speed_mps: status.speed", "speed_mps: {path: status.speed, scale: 0.001}")
    profiles = Profiles.load(_write(tmp_path, text))
    payload = lift(speed=1500)
    payload["regCode"] = "M1"
    frame = profiles.decode("mine/M1/data", _bytes(payload), RX)
    assert isinstance(frame, MappedFrame) and frame.body.speed_mps == 1.5
    payload["status"]["speed"] = 31000
    rejected = profiles.decode("mine/M1/data", _bytes(payload), RX)
    assert isinstance(rejected, Rejected) and rejected.reason == "out_of_range"
    assert "status.speed" in rejected.detail


def test_a_derived_seq_is_the_device_time_in_ms(tmp_path: Path) -> None:
    text = GOOD.replace("name: lift-numeric", "name: mine").replace("lift/{", "mine/{")
    text = text.replace("seq: seqNo", "seq: {derive: time}").replace(
        "boot: bootId", "boot: {value: 0}"
    )
    profiles = Profiles.load(_write(tmp_path, text))
    payload = lift()
    payload["regCode"] = "M1"
    frame = profiles.decode("mine/M1/data", _bytes(payload), RX + timedelta(seconds=1))
    assert isinstance(frame, MappedFrame)
    assert (frame.body.seq, frame.body.boot) == (int(RX.timestamp() * 1000) - 3000, 0)


def test_mapped_frames_keep_the_contract_body(profiles: Profiles) -> None:
    frame = profiles.decode(TOPIC, _bytes(lift()), RX)
    assert isinstance(frame, MappedFrame)
    # What the black box and the incidents' frames keep: the contract's fields.
    body = as_sent(frame)
    assert (body["elevator_id"], body["door"], body["ts"]) == (
        "L1",
        "closed",
        "2026-11-27T01:15:02Z",
    )
    assert "regCode" not in body

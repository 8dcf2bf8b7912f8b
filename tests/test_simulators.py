"""The simulator speaks the contract: every frame decodes, seq/boot behave, runs reproduce,
misbehaving devices are rejected for the right reason, every fault code can be injected."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from gateway.clock import FixedClock
from gateway.frames import FAULT_CODES, EventBody, Frame, Rejected, decode
from simulators.car import Car, Trip
from simulators.crew import ApiReporter
from simulators.fleet import Fleet
from simulators.labels import LabelWriter
from simulators.misbehave import EXPECTED_REJECTION, MISBEHAVIOURS, MisbehaveConfig
from simulators.mqtt import ListPublisher
from simulators.scenario import ScenarioError, load_scenario, parse_scenario
from simulators.traffic import arrivals

START = "2026-11-27T07:00:00+08:00"
# Fast crews so a fault runs its whole course within a simulated hour.
QUICK_CREW = {
    "delay": {"distribution": "fixed", "median_s": 300, "late_share": 0},
    "release_s": [60, 60],
    "repair_s": [120, 120],
}


def simulate(
    hours: float = 1.0, **overrides: Any
) -> tuple[Fleet, list[tuple[str, bytes, bool]], FixedClock]:
    data: dict[str, Any] = {
        "seed": 11,
        "start": START,
        "elevators": [
            {"prefix": "RES", "count": 3, "building": "residential", "traffic": 3},
            {"prefix": "OFF", "count": 1, "building": "office", "floors": [0, 20]},
        ],
        "faults": {"entrapments_per_year": 3000, "faults_per_year": 5000, "reboots_per_year": 5000},
        "crew": QUICK_CREW,
    }
    data.update(overrides)
    scenario = parse_scenario(data)
    clock = FixedClock(datetime.fromisoformat(START))
    publisher = ListPublisher()
    fleet = Fleet(scenario, clock, publisher)
    fleet.run(hours * 3600)
    fleet.stop()
    return fleet, publisher.messages, clock


@pytest.fixture(scope="module")
def run() -> tuple[Fleet, list[tuple[str, bytes, bool]], FixedClock]:
    return simulate(hours=2)


def decoded(messages: list[tuple[str, bytes, bool]], clock: FixedClock) -> list[Frame]:
    frames = [decode(topic, payload, clock.now()) for topic, payload, _ in messages]
    rejected = [f for f in frames if isinstance(f, Rejected)]
    assert not rejected, rejected[:3]
    return frames  # type: ignore[return-value]


def test_every_frame_decodes_as_a_valid_frame(run: Any) -> None:
    fleet, messages, clock = run
    frames = decoded(messages, clock)
    kinds = {f.kind for f in frames}
    assert kinds == {"status", "event", "online"}
    assert fleet.stats.faults["entrapment"] > 0
    retained = {t for t, _, r in messages if r}
    assert all(t.endswith("/online") for t in retained)


def test_seq_increases_by_one_per_boot_and_a_reboot_changes_boot(run: Any) -> None:
    _, messages, clock = run
    seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
    boots: dict[str, list[int]] = defaultdict(list)
    for frame in decoded(messages, clock):
        if frame.body is None:
            continue
        key = (frame.elevator_id, frame.body.boot)
        if frame.body.boot not in boots[frame.elevator_id]:
            boots[frame.elevator_id].append(frame.body.boot)
        seqs[key].append(frame.body.seq)
    for (_, boot), seq in seqs.items():
        assert seq == list(range(seq[0], seq[0] + len(seq))), boot
    # Every car starts at seq 0; after a reboot, a new boot starts at 0 again.
    assert all(seq[0] == 0 for seq in seqs.values())
    rebooted = [b for b in boots.values() if len(b) > 1]
    assert rebooted, "no reboot in the run"
    assert all(b == sorted(b) for b in rebooted)  # boot ids are boot times: they increase


def test_reboot_announces_offline_then_online(run: Any) -> None:
    _, messages, _ = run
    online = [(t, p) for t, p, _ in messages if t.endswith("/online")]
    assert any(p == b"0" for _, p in online[:-5])  # a "0" before the final shutdown


def test_status_is_periodic_and_on_every_change(run: Any) -> None:
    fleet, messages, clock = run
    last: dict[str, tuple[datetime, dict[str, Any]]] = {}
    watched = ("moving", "door", "door_zone", "occupied", "mode", "alarm_button", "power")
    changes = 0
    for frame in decoded(messages, clock):
        if frame.kind != "status":
            continue
        body = msgspec.structs.asdict(frame.body)  # type: ignore[arg-type]
        if frame.elevator_id in last:
            prev_ts, prev = last[frame.elevator_id]
            gap = (body["ts"] - prev_ts).total_seconds()
            interval = fleet.scenario.status_interval_s
            assert gap <= interval + fleet.scenario.tick_s, (frame.elevator_id, gap)
            changes += any(prev[k] != body[k] for k in watched)
        last[frame.elevator_id] = (body["ts"], body)
    assert changes > 100


def test_a_seeded_scenario_is_reproducible() -> None:
    first, messages_1, _ = simulate(hours=0.5, misbehave={"devices": 0.5})
    second, messages_2, _ = simulate(hours=0.5, misbehave={"devices": 0.5})
    assert messages_1 == messages_2
    assert first.label_log == second.label_log
    assert first.label_log
    _, messages_3, _ = simulate(hours=0.5, seed=12, misbehave={"devices": 0.5})
    assert messages_3 != messages_1


@pytest.mark.parametrize("name", MISBEHAVIOURS)
def test_misbehaving_devices_are_rejected_for_the_expected_reason(name: str) -> None:
    cfg = MisbehaveConfig().only([name], devices=1.0)
    corruption = dict.fromkeys(EXPECTED_REJECTION, 0.2 if name in EXPECTED_REJECTION else 0.0)
    settings = {**cfg.__dict__, **{k: v for k, v in corruption.items() if k == name}}
    fleet, messages, clock = simulate(hours=0.5, misbehave=settings)
    assert fleet.stats.misbehaved[name] > 0
    received = clock.now()
    seen = 0
    for topic, payload, _ in messages:
        result = decode(topic, payload, received)
        if name in EXPECTED_REJECTION:
            if isinstance(result, Rejected):
                assert result.reason == EXPECTED_REJECTION[name], result
                seen += 1
        else:
            assert isinstance(result, Frame), result
    if name in EXPECTED_REJECTION:
        assert seen > 0
    if name == "clock_skew":
        first = next(json.loads(p) for t, p, _ in messages if t.endswith("/status"))
        skew = datetime.fromisoformat(first["ts"]) - datetime.fromisoformat(START)
        assert skew.total_seconds() >= 420


INJECTABLE = sorted(FAULT_CODES - {"ENTRAPMENT", "CREW_ON_SITE", "ALARM_TEST"})  # events, no faults


@pytest.mark.parametrize("code", INJECTABLE)
def test_every_fault_code_is_injected_raised_and_cleared(code: str) -> None:
    fleet, messages, clock = simulate(
        hours=1,
        elevators=[{"prefix": "F", "count": 1, "building": "office", "floors": [0, 6]}],
        faults={
            "entrapments_per_year": 0,
            "faults_per_year": 100_000,
            "reboots_per_year": 0,
            "codes": {code: 1},
        },
    )
    events = [f.body for f in decoded(messages, clock) if f.kind == "event"]
    raised = {e.code for e in events if e.state == "raised"}  # type: ignore[union-attr]
    cleared = {e.code for e in events if e.state == "cleared"}  # type: ignore[union-attr]
    assert code in raised and code in cleared
    done = [label for label in fleet.label_log if label.kind == code and label.end]
    assert done, fleet.label_log


def _statuses(messages: list[tuple[str, bytes, bool]], clock: FixedClock) -> list[Any]:
    return [f.body for f in decoded(messages, clock) if f.kind == "status"]


@pytest.mark.parametrize(
    ("cause", "trapped"),
    [
        # domain.md's entrapment rules, as the car shows them while people are inside.
        ("between_floors", lambda s: not s.moving and s.door == "closed" and not s.door_zone),
        ("at_landing", lambda s: not s.moving and s.door == "fault" and s.door_zone),
        ("power_cut", lambda s: not s.moving and s.power == "battery"),
    ],
)
def test_entrapments_look_like_entrapments_until_the_crew_frees_them(
    cause: str, trapped: Any
) -> None:
    fleet, messages, clock = simulate(
        hours=1,
        elevators=[{"prefix": "E", "count": 1, "building": "hospital", "traffic": 5}],
        faults={
            "entrapments_per_year": 100_000,
            "faults_per_year": 0,
            "reboots_per_year": 0,
            "causes": {cause: 1},
        },
    )
    label = next(label for label in fleet.label_log if label.kind == "entrapment")
    assert label.cause == cause and label.end is not None
    start, end = datetime.fromisoformat(label.start), datetime.fromisoformat(label.end)
    during = [s for s in _statuses(messages, clock) if start < s.ts < end]
    normal = [s for s in during if s.mode == "normal"]
    held = (normal[-1].ts - normal[0].ts).total_seconds()
    assert held >= 60 and all(s.occupied and trapped(s) for s in normal[1:])
    # Then the crew: inspection mode, CREW_ON_SITE, passengers out at a landing.
    assert any(s.mode == "inspection" for s in during)
    after = [s for s in _statuses(messages, clock) if s.ts > end]
    assert after[0].door == "open" and after[0].door_zone and not after[0].occupied
    events = [f.body for f in decoded(messages, clock) if f.kind == "event"]
    assert any(e.code == "CREW_ON_SITE" for e in events)  # type: ignore[union-attr]


@pytest.mark.parametrize("dropouts", [0, 3])
def test_the_pir_loses_still_passengers_only_when_told_to(dropouts: float) -> None:
    fleet, messages, clock = simulate(
        hours=1,
        elevators=[{"prefix": "E", "count": 1, "building": "hospital", "traffic": 5}],
        faults={"entrapments_per_year": 100_000, "faults_per_year": 0, "reboots_per_year": 0},
        sensors={"pir_dropouts_per_min": dropouts, "pir_dropout_s": [2, 8]},
    )
    label = next(la for la in fleet.label_log if la.kind == "entrapment" and la.end)
    start, end = datetime.fromisoformat(label.start), datetime.fromisoformat(str(label.end))
    trapped = [s for s in _statuses(messages, clock) if start < s.ts < end]
    unseen = sum(not s.occupied for s in trapped)
    assert (unseen > 0) == (dropouts > 0), unseen


def test_car_travels_at_rated_speed_and_cycles_its_door() -> None:
    car = Car(0, 20, rated_speed_mps=1.5, rated_kg=1000, floor=0)
    car.request(Trip(0, 10, 2))
    seen: list[str] = []
    top_speed, t = 0.0, 0.0
    while t < 120:
        car.step(0.05)
        t += 0.05
        top_speed = max(top_speed, abs(car.velocity))
        if not seen or seen[-1] != car.door:
            seen.append(car.door)
    assert seen == ["opening", "open", "closing", "closed", "opening", "open", "closing", "closed"]
    assert car.floor == 10 and car.door_zone and not car.riding
    assert top_speed == pytest.approx(1.5)


def test_traffic_follows_the_residential_peaks() -> None:
    import random

    rng = random.Random(1)
    morning = [t for _ in range(2000) for t in arrivals(rng, "residential", 8, 30, -1, 24)]
    evening = [t for _ in range(2000) for t in arrivals(rng, "residential", 19, 30, -1, 24)]
    night = [t for _ in range(2000) for t in arrivals(rng, "residential", 3, 30, -1, 24)]
    assert len(night) * 5 < len(morning)
    assert sum(t.destination == 0 for t in morning) > 0.7 * len(morning)
    assert sum(t.origin == 0 for t in evening) > 0.7 * len(evening)


def test_scenario_file_loads_and_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "seed: 3\nelevators:\n  - {prefix: A, count: 2, building: office, floors: [-2, 9]}\n"
        "crew: {delay: {distribution: uniform, low_s: 60, high_s: 90}}\n"
    )
    scenario = load_scenario(path)
    assert scenario.size == 2 and scenario.elevators[0].floors == (-2, 9)
    assert scenario.resized(10).size == 10
    for bad, where in [
        ({"elevators": [{"building": "castle"}]}, "elevators[0].building"),
        ({"faults": {"entrapment_rate": 1}}, "faults.entrapment_rate"),
        ({"crew": {"delay": {"median_s": "soon"}}}, "crew.delay.median_s"),
        ({"misbehave": {"duplicates": 2}}, "misbehave"),
    ]:
        with pytest.raises(ScenarioError, match=where.replace("[", r"\[").replace("]", r"\]")):
            parse_scenario(bad)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_labels_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"labels{suffix}"
    fleet, _, _ = simulate(hours=0.5)
    writer = LabelWriter(path)
    for label in fleet.label_log:
        writer.write(label)
    writer.close()
    lines = path.read_text().splitlines()
    if suffix == ".csv":
        assert lines[0] == "elevator_id,kind,cause,start,end,codes"
        assert len(lines) == len(fleet.label_log) + 1
    else:
        rows = [json.loads(line) for line in lines]
        assert {r["kind"] for r in rows} == {label.kind for label in fleet.label_log}


def test_crew_reports_dispatch_and_arrival_to_the_api() -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        body = json.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body or dict(request.url.params)))
        if request.method == "GET":
            return httpx.Response(200, json=[{"id": "inc-7", "kind": "entrapment"}])
        return httpx.Response(200, json={})

    clock = FixedClock(datetime(2026, 11, 27, tzinfo=UTC))
    client = httpx.Client(base_url="http://gw", transport=httpx.MockTransport(handler))
    reporter = ApiReporter("http://gw", "tok", clock, client=client)
    reporter.dispatched("E0001", "entrapment", "E0001-C1", "Apex")
    reporter.arrived("E0001", "entrapment", "E0001-C1", clock.now())
    reporter.close()
    posts = [(path, body) for method, path, body in calls if method == "POST"]
    assert posts == [
        ("/api/incidents/inc-7/dispatch", {"crew_id": "E0001-C1", "maintenance_company": "Apex"}),
        (
            "/api/incidents/inc-7/arrival",
            {"crew_id": "E0001-C1", "at": "2026-11-27T00:00:00.000+00:00"},
        ),
    ]
    assert calls[0][2] == {"state": "open", "elevator_id": "E0001"}
    assert reporter.sent == 2


def test_alarm_devices_call_daily_except_the_broken_share() -> None:
    """With `alarm_tests_broken` (the demo's), each car's alarm device places its ALARM_TEST
    call within ten minutes and then daily, but for that share that never calls; by default
    no car sends one."""
    groups = [{"prefix": "RES", "count": 40, "building": "residential", "traffic": 0}]
    quiet = {"entrapments_per_year": 0, "faults_per_year": 0, "reboots_per_year": 0}

    def calls(**overrides: Any) -> Counter[str]:
        _, messages, clock = simulate(hours=0.2, elevators=groups, faults=quiet, **overrides)
        return Counter(
            f.elevator_id
            for f in decoded(messages, clock)
            if isinstance(f.body, EventBody) and f.body.code == "ALARM_TEST"
        )

    assert calls() == Counter()
    called = calls(alarm_tests_broken=0.1)
    assert set(called.values()) == {1}  # one call in the first ten minutes, none again yet
    assert 30 <= len(called) < 40  # about 10 % of 40 never call (seeded)

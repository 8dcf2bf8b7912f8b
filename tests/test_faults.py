"""Faults on real processes (issue 6): the time-series store, the gateway and the broker each
fail during a steady stream, and a flood of hostile payloads arrives; nothing the broker
acknowledged is lost, nothing is stored twice, no incident is lost or doubled.

Stored frames are checked by their exact `seq`s per elevator in VictoriaMetrics' raw export,
not by counts. Each test adds a row to the ledger (tests/ledger.py) in the JSON-lines file
named by `GATEWAY_FAULTS_REPORT`; `python bench/faults.py` runs this module with the others
that add rows and prints the table.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.frames import REASONS, Frame, decode
from gateway.settings import Settings
from gateway.store import open_store
from simulators.device import Emitted
from simulators.misbehave import EXPECTED_REJECTION, MisbehaveConfig, Misbehaviour
from tests.conftest import (
    Broker,
    Device,
    Stream,
    VictoriaMetrics,
    event_frame,
    publish_all,
    status_frame,
    wait_for,
)
from tests.gateways import start_gateway
from tests.ledger import Row, record
from tests.services import make_vm, scrape

# Each test is bounded well below the suite's 300 s default (they take 10-50 s each).
pytestmark = pytest.mark.timeout(120)

FLEET = 50
RATE = 200  # frames/s across the fleet: 4 per elevator and second


def _report(
    fault: str,
    published: int,
    acknowledged: int,
    stored: int,
    note: str = "",
    dead_lettered: dict[str, int] | None = None,
) -> None:
    """A row of the ledger (tests/ledger.py), once the test has asserted that every
    acknowledged frame is stored exactly once."""
    record(Row(fault, published, acknowledged, stored, 0, dead_lettered or {}, 0, note))


def _stored(vm: VictoriaMetrics, prefix: str, acked: dict[str, set[int]]) -> dict[str, list[float]]:
    """Every stored seq per elevator (copies included), once every acknowledged one is."""

    def missing(stored: dict[str, list[float]]) -> dict[str, set[int]]:
        gaps = {e: s - set(stored.get(e, ())) for e, s in acked.items()}
        return {e: s for e, s in gaps.items() if s}

    try:
        stored = wait_for(
            lambda: (s := vm.values("elevator_status_seq", prefix)) and not missing(s) and s,
            timeout=40,
            interval=0.5,
        )
    except AssertionError:
        gaps = missing(vm.values("elevator_status_seq", prefix))
        n = sum(map(len, gaps.values()))
        raise AssertionError(f"{n} acknowledged frames not stored: {gaps}") from None
    return stored


def _stored_exactly_once(vm: VictoriaMetrics, prefix: str, acked: dict[str, set[int]]) -> int:
    """Wait until every acknowledged seq is stored; assert none is stored twice. Returns the
    number of frames stored."""
    stored = _stored(vm, prefix, acked)
    twice = {e: [s for s, n in Counter(v).items() if n > 1] for e, v in stored.items()}
    assert not any(twice.values()), f"stored more than once: {twice}"
    return sum(len(v) for v in stored.values())


def _entrapments(store_url: str, elevator_id: str) -> int:
    """The elevator's entrapment incidents; each must record its detection once (the frames
    the journal replays after a crash are detected again, and must add nothing)."""
    store = open_store(store_url)
    try:
        found = [i for i in store.list_incidents(elevator_id=elevator_id) if i.kind == "entrapment"]
    finally:
        store.close()
    for incident in found:
        by = [e.by for e in incident.timeline if e.by.startswith("rule ")]
        assert len(by) == len(set(by)), incident.timeline
    return len(found)


def test_tsdb_down_30s_during_stream_every_frame_once_and_spool_visible(
    gateway_settings: Callable[..., Settings],
    broker: Broker,
    own_vm: VictoriaMetrics,
    device: Device,
    prefix: str,
) -> None:
    """VictoriaMetrics stopped for 30 s under 200 frames/s: the spool takes the stream,
    `/api/health` and `/metrics` show its depth and age, and once the store is back every
    acknowledged frame is in it exactly once, with no dedup in the store: no crash is
    involved, so exactly-once is the gateway's doing. A controller's ENTRAPMENT during the
    outage opens its incident as usual (incidents never wait for the time-series store).

    Stopped with SIGTERM, not SIGKILL: VictoriaMetrics keeps the last second or so of writes
    it has acknowledged in memory, and loses them to a SIGKILL (tried: frames went missing);
    no client can guard against that, and InfluxDB, with its write-ahead log, does not."""
    settings = gateway_settings(tsdb_url=own_vm.url, tsdb_timeout_s=2)
    fleet = [f"{prefix}-{n}" for n in range(FLEET)]
    trapped = f"{prefix}-trap"
    base = f"http://127.0.0.1:{settings.http_port}"
    with Gateway(settings) as gw:
        # Subscribed first: frames published before the session exists are no one's.
        assert gw.session.wait_connected(10)
        stream = Stream(broker.url, fleet, RATE)
        with stream:
            wait_for(lambda: own_vm.count("elevator_status_seq", prefix) >= RATE)
            own_vm.stop()
            down_at = time.monotonic()
            device.publish(f"elevators/{trapped}/event", event_frame(trapped, 0, "ENTRAPMENT"))

            def spool_shown() -> bool:
                health = httpx.get(f"{base}/api/health", timeout=5).json()
                page = scrape(f"{base}/metrics")
                return (
                    health["tsdb"] is False
                    and health["spool_points"] > RATE
                    and health["spool_oldest_age_s"] >= 1.0
                    and page.get("gateway_spool_points", 0) > RATE
                    and page.get("gateway_spool_oldest_age_seconds", 0) >= 1.0
                )

            wait_for(spool_shown, timeout=20, interval=0.2)
            time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage itself
            own_vm.start()
            wait_for(lambda: gw.spool.depth == 0 and gw.writer.healthy, timeout=30)
            stream.stop()
            stored = _stored_exactly_once(own_vm, f"{prefix}-", stream.acked())
            assert httpx.get(f"{base}/api/health").json()["spool_oldest_age_s"] == 0
            lost = 1 - _entrapments(settings.store_url, trapped)
    assert lost == 0
    note = "no store dedup; the ENTRAPMENT sent meanwhile opened its incident"
    _report("time-series store stopped 30 s", stream.sent, stream.acked_count(), stored, note)


def test_gateway_kill9_during_qos1_stream_stores_every_frame(
    gateway_env: dict[str, str], broker: Broker, device: Device, tmp_path: Path, prefix: str
) -> None:
    """`kill -9` of `python -m gateway run` under the QoS 1 stream, then a restart: every
    frame the broker acknowledged to the publisher is stored, and the controller ENTRAPMENT
    published just before the kill is one incident.

    A batch written to the store but not yet acknowledged when the process died comes again,
    and the new process, whose dedup memory died with the old one, writes it again: across a
    crash the gateway alone cannot be exactly-once. InfluxDB, the production store, overwrites
    a point of the same measurement, tags and timestamp, so the second copy replaces the
    first; VictoriaMetrics keeps both unless run with `-dedup.minScrapeInterval=1ms`. So the
    copies are counted first (samples of one elevator sharing a seq), then VictoriaMetrics is
    restarted on the same data with that flag and the frames must be there exactly once."""
    vm = make_vm(tmp_path / "vm")
    vm.start()
    env = gateway_env | {"GATEWAY_TSDB_URL": vm.url}
    metrics_url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics"
    fleet = [f"{prefix}-{n}" for n in range(FLEET)]
    trapped = f"{prefix}-trap"
    gw = start_gateway(env, tmp_path / "gw.log")
    try:
        _wait_connected(metrics_url)
        with Stream(broker.url, fleet, RATE) as stream:
            wait_for(lambda: vm.count("elevator_status_seq", prefix) >= 2 * RATE)
            device.publish(f"elevators/{trapped}/event", event_frame(trapped, 0, "ENTRAPMENT"))
            gw.send_signal(signal.SIGKILL)
            gw.wait()
            gw = start_gateway(env, tmp_path / "gw.log")
            _wait_connected(metrics_url)
            wait_for(lambda: scrape(metrics_url).get(_ACCEPTED_STATUS, 0) >= RATE)
        copies = _stored(vm, f"{prefix}-", stream.acked())
        duplicates = sum(len(v) - len(set(v)) for v in copies.values())
        vm.stop()
        vm.argv.append("-dedup.minScrapeInterval=1ms")
        vm.start()
        stored = _stored_exactly_once(vm, f"{prefix}-", stream.acked())
        entrapments = _entrapments(env["GATEWAY_STORE_URL"], trapped)
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=20)
        vm.stop()
    assert entrapments == 1
    note = f"{duplicates} copies without store dedup, 0 with -dedup.minScrapeInterval=1ms"
    _report("gateway kill -9 (QoS 1 stream), restarted", stream.sent, stream.acked_count(),
            stored, note)  # fmt: skip


_ACCEPTED_STATUS = 'gateway_frames_accepted_total{kind="status"}'


def _wait_connected(metrics_url: str) -> None:
    wait_for(lambda: scrape(metrics_url).get("gateway_broker_connected") == 1.0, timeout=20)


SPEED = 10.0
TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}


def test_broker_restart_during_stream_reconnects_no_loss_no_duplicate_incident(
    gateway_settings: Callable[..., Settings],
    own_broker: Broker,
    vm: VictoriaMetrics,
    prefix: str,
) -> None:
    """Mosquitto (persistence on) stopped for 4 s and started again under the stream, with a
    car trapped between floors that goes on reporting it. The gateway runs 10x fast, so the
    outage is 40 s of its time, longer than the rules' 30 s silence window, and the trapped
    car alarms after 2 s. The gateway reconnects and resubscribes by itself; every frame the
    broker acknowledged is stored once; the entrapment stays one incident; and the cars it
    could not hear while disconnected are not reported offline."""
    settings = gateway_settings(mqtt_url=own_broker.url, tick_interval_s=0.02)
    fleet = [f"{prefix}-{n}" for n in range(FLEET)]
    trapped = f"{prefix}-trap"
    stream = Stream(own_broker.url, [*fleet, trapped], RATE, {trapped: TRAPPED})
    with Gateway(settings, ScaledClock(SPEED)) as gw:
        assert gw.session.wait_connected(10)  # subscribed before the first frame
        with stream:
            wait_for(lambda: _entrapments(settings.store_url, trapped) == 1, timeout=20)
            own_broker.stop()
            wait_for(lambda: not gw.session.connected)
            time.sleep(4)  # the outage
            own_broker.start()
            wait_for(lambda: gw.session.connected, timeout=30)
            resumed = stream.acked_count()
            wait_for(lambda: stream.acked_count() >= resumed + 2 * RATE, timeout=20)
            stream.stop()
            stored = _stored_exactly_once(vm, f"{prefix}-", stream.acked())
            incidents = [
                (i.elevator_id, i.kind)
                for i in gw.store.list_incidents(limit=10_000)
                if i.elevator_id.startswith(prefix)
            ]
    # The trapped car's own fault (stopped outside the door zone) is right; an `offline` for
    # every car the gateway could not hear was the defect this test found.
    assert sorted(incidents) == [(trapped, "STOP_OUTSIDE_DOOR_ZONE"), (trapped, "entrapment")]
    note = "one entrapment incident, 0 false offline"
    _report("broker stopped 4 s, restarted", stream.sent, stream.acked_count(), stored, note)


HOSTILE = 100_000
VALID_EVERY = 10  # a valid frame after every 10 hostile messages


def _nested(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"a": inner}
    return inner


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _with(body: dict[str, Any], raw: str) -> bytes:
    """The body with the JSON text `raw` (not valid JSON values, like NaN) as speed_mps."""
    return _json(body).replace(b'"speed_mps":0.0', b'"speed_mps":' + raw.encode())


# Catalogued attacks and how often each is drawn (oversized ones are 70 KiB: a few suffice).
ATTACKS: dict[str, int] = {
    "oversized": 1, "deep_array": 20, "deep_detail": 40, "nan": 40, "infinity": 40,
    "huge_int": 40, "invalid_utf8": 40, "control_in_id": 40, "raw_control_char": 20,
    "far_future": 40, "far_past": 40, "naive_ts": 20, "spoofed": 40, "bad_topic": 40,
    "online_garbage": 20, "version": 20, "not_object": 20, "missing": 20, "enum": 20,
}  # fmt: skip


def _attack(
    name: str, r: random.Random, car: str, other: str, body: dict[str, Any]
) -> tuple[str, bytes, str]:
    """One message of attack `name` on `car`: (topic, payload, the reason it must get)."""
    status = f"elevators/{car}/status"
    match name:
        case "oversized":
            return status, _json(body | {"pad": "x" * 70_000}), "oversized"
        case "deep_array":  # refused at its first byte: a body is an object, not a list
            return status, b"[" * r.randint(300, 3000), "not_an_object"
        case "deep_detail":
            event = json.loads(event_frame(car, body["seq"], "X_FUZZ"))
            return f"elevators/{car}/event", _json(event | {"detail": _nested(40)}), "too_deep"
        case "nan":  # not JSON
            return status, _with(body, "NaN"), "bad_json"
        case "infinity":  # the words are not JSON; a number too large for a float is
            raw = r.choice(["Infinity", "-Infinity", "1e400"])
            return status, _with(body, raw), "out_of_range" if raw == "1e400" else "bad_json"
        case "huge_int":
            huge = r.choice([1, -1]) * 10 ** r.randint(19, 400)
            return status, _json(body | {r.choice(["seq", "boot", "floor"]): huge}), "out_of_range"
        case "invalid_utf8":
            return status, _json(body).replace(b'"normal"', b'"n\xff\xfel"'), "bad_encoding"
        case "control_in_id":
            return status, _json(body | {"elevator_id": car + chr(r.randint(0, 31))}), "bad_id"
        case "raw_control_char":  # unescaped in a JSON string
            return status, _json(body).replace(car.encode(), car.encode() + b"\x07"), "bad_json"
        case "far_future":
            ts = f"{r.randint(2100, 9999)}-01-01T00:00:00Z"
            return status, _json(body | {"ts": ts}), "timestamp_out_of_range"
        case "far_past":
            ts = f"{r.randint(1, 2000):04d}-06-01T00:00:00Z"
            return status, _json(body | {"ts": ts}), "timestamp_out_of_range"
        case "naive_ts":
            return status, _json(body | {"ts": body["ts"][:19]}), "bad_timestamp"
        case "spoofed":
            return status, _json(body | {"elevator_id": other}), "spoofed_id"
        case "bad_topic":
            bad = r.choice([car + " x", "x" * 65, "电梯" + car, car + "."])
            return f"elevators/{bad}/status", _json(body), "bad_topic"
        case "online_garbage":
            payload = r.choice([b"yes", b"", b"10"])
            return f"elevators/{car}/online", payload, "bad_online_payload"
        case "version":
            return status, _json(body | {"v": r.choice([0, 2, 99])}), "unsupported_version"
        case "not_object":
            return status, r.choice([b"null", b"[]", b"42", b'"x"']), "not_an_object"
        case "missing":
            return status, _json({k: v for k, v in body.items() if k != "door"}), "missing_field"
        case _:
            return status, _json(body | {"door": "ajar"}), "unknown_enum"


def _mutated(rng: random.Random, payload: bytes) -> bytes:
    """A valid payload with a few random bytes inserted, deleted or replaced."""
    data = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data))
        match rng.randrange(3):
            case 0:
                data.insert(at, rng.randrange(256))
            case 1:
                del data[at]
            case _:
                data[at] = rng.randrange(256)
    return bytes(data)


def _fuzz_messages(cars: list[str], seed: int) -> tuple[list[tuple[str, bytes]], Counter[str]]:
    """HOSTILE hostile messages with a valid frame after every VALID_EVERY, and the number
    of rejections expected per reason: a third from misbehave.py's corruptions, a third from
    the catalogue above, a third random byte mutations of valid frames (for those, the
    reason the decoder gives; a mutation that still decodes is drawn again)."""
    rng = random.Random(seed)
    # Oversized ones come from the catalogue, sparingly; an uncorrupted draw is drawn again.
    firmware = MisbehaveConfig(
        duplicates=0, reorder=0, malformed_json=0.4, wrong_types=0.3, spoofed_id=0.29, oversized=0
    )
    names, weights = list(ATTACKS), list(ATTACKS.values())
    out: list[tuple[str, bytes]] = []
    expected: Counter[str] = Counter()
    now = datetime.now(UTC)
    for i in range(HOSTILE):
        car, other = rng.sample(cars, 2)
        body = json.loads(status_frame(car, 10**6 + i))  # seqs no valid frame uses
        if i % 3 == 0:
            device = Misbehaviour(car, firmware, rng, other)
            while not (
                message := device.apply([Emitted("status", car, body)], 0.0)[0]
            ).misbehaviour:
                pass
            topic, payload = message.topic, message.payload
            reason = EXPECTED_REJECTION[str(message.misbehaviour)]
        elif i % 3 == 1:
            name = rng.choices(names, weights)[0]
            topic, payload, reason = _attack(name, rng, car, other, body)
        else:
            topic = f"elevators/{car}/status"
            while isinstance(result := decode(topic, _mutated(rng, _json(body)), now), Frame):
                pass
            payload, reason = result.payload, result.reason
        out.append((topic, payload))
        expected[reason] += 1
        if i % VALID_EVERY == VALID_EVERY - 1:
            n = i // VALID_EVERY
            valid = cars[n % len(cars)]
            out.append((f"elevators/{valid}/status", status_frame(valid, n // len(cars))))
    return out, expected


def test_fuzz_100k_hostile_payloads_each_rejected_with_its_reason_valid_ones_stored(
    gateway_env: dict[str, str],
    own_broker: Broker,
    vm: VictoriaMetrics,
    tmp_path: Path,
    prefix: str,
) -> None:
    """100,000 hostile messages (broken firmware from simulators/misbehave.py, a catalogue of
    attacks, random byte mutations) with 10,000 valid frames interleaved, at QoS 1, into a
    `python -m gateway run` process: it keeps running, counts every hostile message under
    the reason expected for it, and stores every valid frame. The per-elevator rate limit is
    set out of reach, so that each message gets its own reason rather than `rate_limited`.
    A broker of its own: the persistent sessions of the other tests' gateways would have the
    shared one queue every message for them too."""
    cars = [f"{prefix}-{n}" for n in range(100)]
    messages, expected = _fuzz_messages(cars, seed=6)
    # Every reason a message can earn is exercised (the other two are not the message's own).
    assert set(expected) == set(REASONS) - {"rate_limited", "tsdb_refused"}
    env = gateway_env | {
        "GATEWAY_MQTT_URL": own_broker.url,
        "GATEWAY_RATE_LIMIT_PER_S": "1e9",
        "GATEWAY_RATE_LIMIT_BURST": "1000000000",
    }
    metrics_url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics"
    gw = start_gateway(env, tmp_path / "gw.log")
    try:
        _wait_connected(metrics_url)
        assert publish_all(own_broker.url, messages) == len(messages)

        def rejected() -> dict[str, float]:
            page = scrape(metrics_url)
            return {
                r: page.get(f'gateway_frames_rejected_total{{reason="{r}"}}', 0) for r in REASONS
            }

        wait_for(lambda: sum(rejected().values()) >= HOSTILE, timeout=60, interval=0.5)
        valid = HOSTILE // VALID_EVERY
        acked = {car: set(range(valid // len(cars))) for car in cars}
        stored = _stored_exactly_once(vm, f"{prefix}-", acked)
        assert {r: n for r, n in rejected().items() if n} == dict(expected)
        assert gw.poll() is None  # still running
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0
    note = f"{HOSTILE:,} hostile messages rejected under {len(expected)} reasons, no crash"
    fault = "fuzz: 100,000 hostile + 10,000 valid"
    _report(fault, len(messages), len(messages), stored, note, dict(expected))

"""End to end on real parts: Mosquitto → gateway → VictoriaMetrics, dead letter in SQLite.

Every test runs with each ingest client: libmosquitto (journal, then acknowledge) and paho
(acknowledge once stored).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.journal import JournalReader
from gateway.store import open_store
from tests.conftest import Device, Subscriber, VictoriaMetrics, status_frame, wait_for


@pytest.fixture(params=["libmosquitto", "paho"])
def mqtt_client(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def gateway_settings(gateway_settings, mqtt_client: str):
    return functools.partial(gateway_settings, mqtt_client=mqtt_client)


@pytest.fixture
def gateway_env(gateway_env: dict[str, str], mqtt_client: str) -> dict[str, str]:
    return gateway_env | {"GATEWAY_MQTT_CLIENT": mqtt_client}


MALFORMED = [
    (b"{not json", "bad_json"),
    (b'{"v": 1}', "missing_field"),
    (None, "wrong_type"),  # seq as a string, built per elevator below
    (None, "unknown_enum"),
    (None, "out_of_range"),
    (None, "spoofed_id"),
    (b"x" * (64 * 1024 + 1), "oversized"),
]


def _malformed(eid: str, i: int) -> list[tuple[bytes, str]]:
    fixed = {
        "wrong_type": json.loads(status_frame(eid, 0)) | {"seq": "7"},
        "unknown_enum": json.loads(status_frame(eid, 0)) | {"door": "ajar"},
        "out_of_range": json.loads(status_frame(eid, 0)) | {"load_pct": 400},
        "spoofed_id": json.loads(status_frame(eid, 0)) | {"elevator_id": f"{eid}x"},
    }
    return [
        (payload if payload is not None else json.dumps(fixed[reason]).encode(), reason)
        for payload, reason in MALFORMED
    ]


def test_valid_frames_stored_and_malformed_dead_lettered(
    gateway_settings, device: Device, vm: VictoriaMetrics, broker, prefix: str
) -> None:
    settings = gateway_settings()
    dead_topic = Subscriber(broker.url, "gateway/deadletter")
    elevators = [f"{prefix}-{n}" for n in range(5)]
    sent = 0
    expected_reasons: Counter[str] = Counter()
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        for seq in range(20):
            for eid in elevators:
                device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
                sent += 1
            if seq % 3 == 0:  # malformed frames interleaved with the valid ones
                for payload, reason in _malformed(elevators[seq % 5], seq):
                    device.publish(f"elevators/{elevators[seq % 5]}/status", payload)
                    expected_reasons[reason] += 1
        device.publish("elevators/bad id/status", status_frame("x", 1))
        expected_reasons["bad_topic"] += 1

        wait_for(lambda: vm.count("elevator_status_seq", prefix) == sent)
        rejected = sum(expected_reasons.values())
        wait_for(lambda: gw.store.dead_letter_count() == rejected)
        reasons = Counter(r["reason"] for r in gw.store.dead_letters(limit=1000))
        assert reasons == expected_reasons
        oversized = next(r for r in gw.store.dead_letters(1000) if r["reason"] == "oversized")
        assert oversized["payload_size"] == 64 * 1024 + 1

        # Still running after all that: a later frame is stored too.
        device.publish(f"elevators/{prefix}-late/status", status_frame(f"{prefix}-late", 0))
        wait_for(lambda: vm.count("elevator_status_seq", f"{prefix}-late") == 1)
        health = httpx.get(f"http://127.0.0.1:{settings.http_port}/api/health").json()
        assert health == health | {"status": "ok", "broker": True, "tsdb": True, "store": True}

    wait_for(lambda: len(dead_topic.messages) == rejected)
    published = [json.loads(p) for _t, p in dead_topic.messages]
    assert Counter(m["reason"] for m in published) == expected_reasons
    dead_topic.close()
    # Exactly one point per frame: nothing duplicated by the flushes.
    assert vm.count("elevator_status_seq", prefix) == sent + 1


def test_duplicates_are_stored_once(
    gateway_settings, device: Device, vm: VictoriaMetrics, prefix: str
) -> None:
    eid = f"{prefix}-dup"
    frames = [status_frame(eid, seq) for seq in range(30)]
    with Gateway(gateway_settings()) as gw:
        assert gw.session.wait_connected(10)
        for _ in range(2):
            for payload in frames:
                device.publish(f"elevators/{eid}/status", payload)
        for payload in reversed(frames[:10]):  # and a reordered replay
            device.publish(f"elevators/{eid}/status", payload)
        wait_for(lambda: vm.count("elevator_status_seq", prefix) >= 30)
        wait_for(lambda: gw.pipeline.pending == 0 and gw.session.backlog == 0)
    assert vm.count("elevator_status_seq", prefix) == 30


def test_persistent_session_delivers_frames_sent_while_down(
    gateway_settings, device: Device, vm: VictoriaMetrics, prefix: str
) -> None:
    settings = gateway_settings()
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)  # the session and its subscriptions now exist
    eid = f"{prefix}-away"
    for seq in range(200):
        device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
    with Gateway(settings) as gw:
        wait_for(lambda: vm.count("elevator_status_seq", prefix) == 200)


def test_embedded_store_when_no_tsdb_url(gateway_settings, device: Device, prefix: str) -> None:
    eid = f"{prefix}-emb"
    with Gateway(gateway_settings(tsdb_url="")) as gw:
        assert gw.session.wait_connected(10)
        for seq in range(10):
            device.publish(f"elevators/{eid}/status", status_frame(eid, seq, occupied=True))
        device.publish(f"elevators/{eid}/online", b"1", retain=True)
        wait_for(lambda: len(gw.store.telemetry_lines(eid)) == 11)
        lines = gw.store.telemetry_lines(eid)
    assert sum(line.startswith("elevator_status,") for line in lines) == 10
    assert any(line.startswith("elevator_online,") for line in lines)
    assert "occupied=true" in lines[0]


def test_tsdb_outage_spools_and_replays(
    gateway_settings, device: Device, own_vm: VictoriaMetrics, prefix: str
) -> None:
    eid = f"{prefix}-out"
    with Gateway(gateway_settings(tsdb_url=own_vm.url, tsdb_timeout_s=2)) as gw:
        assert gw.session.wait_connected(10)
        for seq in range(50):
            device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
        wait_for(lambda: own_vm.count("elevator_status_seq", prefix) == 50)
        own_vm.stop()
        for seq in range(50, 150):
            device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
        wait_for(lambda: gw.spool.depth == 100)
        assert gw.health()["tsdb"] is False
        own_vm.start()
        wait_for(lambda: gw.spool.depth == 0 and gw.writer.healthy, timeout=30)
        wait_for(lambda: own_vm.count("elevator_status_seq", prefix) == 150)


def test_crash_before_handoff_means_redelivery(
    gateway_env: dict[str, str],
    mqtt_client: str,
    device: Device,
    vm: VictoriaMetrics,
    prefix: str,
    tmp_path: Path,
) -> None:
    """kill -9 while frames are received but not yet written: with paho nothing was
    acknowledged, so the broker delivers them again; with libmosquitto they were acknowledged
    after being journaled, and the restarted gateway reads them back from the journal."""
    eid = f"{prefix}-crash"
    holding = gateway_env | {"GATEWAY_FLUSH_INTERVAL_S": "3600", "GATEWAY_BATCH_SIZE": "100000"}
    metrics_url = f"http://127.0.0.1:{gateway_env['GATEWAY_HTTP_PORT']}/metrics"
    gw = _start_gateway(holding, tmp_path / "gw1.log")
    try:
        wait_for(lambda: _metric(metrics_url, "gateway_broker_connected") == 1.0)
        for seq in range(100):
            device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
        wait_for(
            lambda: _metric(metrics_url, 'gateway_frames_received_total{kind="status"}') == 100
        )
        assert vm.count("elevator_status_seq", prefix) == 0  # held, not written
    finally:
        gw.kill()
        gw.wait()
    journal = Path(gateway_env["GATEWAY_SPOOL_DIR"]) / "journal"
    journaled = sum(p.stat().st_size for p in journal.glob("*.wal"))
    assert (journaled > 0) == (mqtt_client == "libmosquitto")
    gw = _start_gateway(gateway_env, tmp_path / "gw2.log")
    try:
        wait_for(lambda: vm.count("elevator_status_seq", prefix) == 100)
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0


def test_sigterm_flushes_and_exits_cleanly(
    gateway_env: dict[str, str], device: Device, vm: VictoriaMetrics, prefix: str, tmp_path: Path
) -> None:
    eid = f"{prefix}-term"
    env = gateway_env | {"GATEWAY_FLUSH_INTERVAL_S": "3600", "GATEWAY_BATCH_SIZE": "100000"}
    metrics_url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics"
    gw = _start_gateway(env, tmp_path / "gw.log")
    wait_for(lambda: _metric(metrics_url, "gateway_broker_connected") == 1.0)
    for seq in range(40):
        device.publish(f"elevators/{eid}/status", status_frame(eid, seq))
    wait_for(lambda: _metric(metrics_url, 'gateway_frames_received_total{kind="status"}') == 40)
    gw.send_signal(signal.SIGTERM)
    assert gw.wait(timeout=20) == 0
    wait_for(lambda: vm.count("elevator_status_seq", prefix) == 40)
    logged = [
        json.loads(line)
        for line in (tmp_path / "gw.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert [e["event"] for e in logged if e["event"].startswith("gateway_")][
        -1
    ] == "gateway_stopped"
    store = open_store(env["GATEWAY_STORE_URL"])
    assert store.ping()
    store.close()


def _start_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - handed to the child for its whole life
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=os.path.dirname(log),
    )


def _metric(url: str, name: str) -> float | None:
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_a_babbling_device_is_rate_limited_and_others_are_not(
    gateway_settings, device: Device, vm: VictoriaMetrics, prefix: str
) -> None:
    babbler, quiet = f"{prefix}-babble", f"{prefix}-quiet"
    settings = gateway_settings(rate_limit_per_s=1.0, rate_limit_burst=50)
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        for seq in range(300):
            device.publish(f"elevators/{babbler}/status", status_frame(babbler, seq))
            if seq % 30 == 0:
                device.publish(f"elevators/{quiet}/status", status_frame(quiet, seq // 30))
        wait_for(lambda: vm.count("elevator_status_seq", quiet) == 10)
        stored = vm.count("elevator_status_seq", babbler)
        assert 50 <= stored < 300
        # Every refused frame was acknowledged: each one is kept, with its bytes, to replay.
        wait_for(lambda: gw.store.dead_letter_count() >= 300 - stored)
        records = gw.store.dead_letters(limit=1000)
        assert {(r["reason"], r["elevator_id"]) for r in records} == {("rate_limited", babbler)}
        refused = sorted(json.loads(r["payload"])["seq"] for r in records)
        stored_seqs = {int(s) for s in vm.values("elevator_status_seq", babbler)[babbler]}
        assert sorted(set(range(300)) - stored_seqs) == refused


def test_a_stalled_gateway_holds_a_bounded_backlog_and_loses_nothing(
    gateway_env: dict[str, str], device: Device, vm: VictoriaMetrics, prefix: str, tmp_path: Path
) -> None:
    """Above capacity the broker queues: with the gateway stopped (SIGSTOP), what it has taken
    in (the libmosquitto receiver's journal) stays within the window; resumed, every frame
    is stored."""
    eid = f"{prefix}-stall"
    env = gateway_env | {"GATEWAY_MQTT_RECEIVE_WINDOW": "100"}
    metrics_url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics"
    gw = _start_gateway(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: _metric(metrics_url, "gateway_broker_connected") == 1.0)
        gw.send_signal(signal.SIGSTOP)  # the gateway; its receiver process runs on
        for seq in range(10):  # 150 cars: within each car's rate limit
            for car in range(150):
                device.publish(f"elevators/{eid}{car}/status", status_frame(f"{eid}{car}", seq))
        snapshot = tmp_path / "journal-copy"  # paho keeps none: the broker holds it all
        journal = Path(env["GATEWAY_SPOOL_DIR"]) / "journal"
        shutil.copytree(journal, snapshot) if journal.exists() else snapshot.mkdir()
        taken_in = 0
        reader, batch = JournalReader(snapshot), [None]
        while batch:
            batch = reader.read()
            taken_in += sum(eid in e.topic for e in batch)  # not other tests' retained frames
        assert taken_in <= 100 + 1  # the window, and the one message that found it full
        gw.send_signal(signal.SIGCONT)
        wait_for(lambda: vm.count("elevator_status_seq", prefix) == 1500, timeout=60)
    finally:
        gw.send_signal(signal.SIGCONT)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0

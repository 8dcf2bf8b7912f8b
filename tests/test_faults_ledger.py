"""Nothing acknowledged is lost, under the faults real fleets meet (issue 20).

Each test drives frames through real Mosquitto into a gateway writing to a real
VictoriaMetrics (behind `StoreProxy` where the store must misbehave), keeps the ledger of
what the broker acknowledged to the publishers, and reconciles it with the store and the
dead letter: 0 lost and 0 duplicates in every row, and what was refused is in the dead letter
with its reason. The other faults' rows (store stopped, broker restart, gateway kill -9 under a
stream, a cluster member killed) come from tests/test_faults.py and tests/test_cluster.py.
`python bench/faults.py` runs them all with longer faults and prints the table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.store import open_store
from tests.conftest import Broker, Stream, VictoriaMetrics, status_frame, wait_for
from tests.gateways import start_gateway
from tests.ledger import (
    Key,
    StoreProxy,
    dead_letter_keys,
    lasting,
    publish_acked,
    reconcile,
    record,
    stored_seqs,
)
from tests.services import make_vm, scrape

pytestmark = pytest.mark.timeout(240)

FLEET = 20
RATE = 200  # frames/s across the fleet


@pytest.fixture
def proxy(vm: VictoriaMetrics) -> Iterator[StoreProxy]:
    p = StoreProxy(vm)
    yield p
    p.close()


def _backlog(eid: str, n: int, every_s: float, end: datetime) -> list[tuple[str, bytes, Key]]:
    """`n` status frames a device buffered, one every `every_s` of its own time up to `end`."""
    start = end - timedelta(seconds=every_s * (n - 1))
    return [
        (
            f"elevators/{eid}/status",
            status_frame(eid, seq, ts=(start + timedelta(seconds=every_s * seq)).isoformat()),
            (eid, seq),
        )
        for seq in range(n)
    ]


def _stream_keys(stream: Stream) -> set[Key]:
    return {(eid, seq) for eid, seqs in stream.acked().items() for seq in seqs}


def _cli(*args: str, settings: Settings) -> str:
    """`elevator-gateway ARGS` on the settings' store and time-series store; its output."""
    env = os.environ | {
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "GATEWAY_STORE_URL": settings.store_url,
        "GATEWAY_TSDB_URL": settings.tsdb_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _dead(gw: Gateway) -> list[tuple[str, Key]]:
    return dead_letter_keys(gw.store.dead_letters(limit=100_000))


def test_a_device_flushing_5000_buffered_frames_at_once_is_stored_in_full(
    gateway_settings: Callable[..., Settings], broker: Broker, vm: VictoriaMetrics, prefix: str
) -> None:
    """A controller back from a network outage sends the 14 hours it buffered in one burst:
    the rate limit judges it by its own clock (a frame every 10 s), so nothing is refused.
    (Judged by arrival, 600 were stored and 4,400 acknowledged and dropped.)"""
    eid = f"{prefix}-flush"
    messages = _backlog(eid, 5000, 10.0, datetime.now(UTC))
    with Gateway(gateway_settings()) as gw:
        assert gw.session.wait_connected(10)
        acked = publish_acked(broker.url, messages)
        stored = stored_seqs(vm, prefix, acked)
        row = record(reconcile("a device flushes 5,000 buffered frames", 5000, acked,
                               stored, _dead(gw)))  # fmt: skip
        assert gw.pipeline.rate_limited == {}
    assert row.acknowledged == 5000
    assert (row.stored, row.duplicates, row.lost, row.dead_lettered) == (5000, 0, 0, {})


def test_a_babbling_device_is_contained_and_every_refused_frame_kept(
    gateway_settings: Callable[..., Settings], broker: Broker, vm: VictoriaMetrics, prefix: str
) -> None:
    """1,000 frames stamped within one second of the device's clock: beyond the burst they
    are refused, and each refused one is in the dead letter with its bytes, to be replayed."""
    eid = f"{prefix}-babble"
    now = datetime.now(UTC)
    messages = [
        (f"elevators/{eid}/status", status_frame(eid, seq, ts=now.isoformat()), (eid, seq))
        for seq in range(1000)
    ]
    settings = gateway_settings(rate_limit_burst=300)
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        acked = publish_acked(broker.url, messages)
        wait_for(lambda: gw.pipeline.rate_limited.get(eid, 0) >= 700, timeout=20)
        stored = stored_seqs(vm, prefix, {(eid, s) for s in range(300)})
        wait_for(lambda: len(_dead(gw)) >= 700, timeout=20)
        row = record(reconcile("a device babbles 1,000 frames in 1 s of its clock", 1000,
                               acked, stored, _dead(gw), "burst 300"))  # fmt: skip
        base = f"http://127.0.0.1:{settings.http_port}"
        assert httpx.get(f"{base}/api/health").json()["rate_limited"] == {eid: 700}
        page = scrape(f"{base}/metrics")
        assert page[f'gateway_rate_limited_frames_total{{elevator_id="{eid}"}}'] == 700
    assert (row.stored, row.dead_lettered, row.lost, row.duplicates) == (
        300, {"rate_limited": 700}, 0, 0,
    )  # fmt: skip
    # Once the device is fixed, the operator stores its burst from the dead letter.
    replay = _cli("deadletter", "replay", "--reason", "rate_limited", settings=settings)
    assert "replayed 700 of 700 rate_limited records" in replay
    replayed = stored_seqs(vm, prefix, acked)
    assert sorted(int(s) for s in replayed[eid]) == list(range(1000))


def test_a_store_refusing_one_elevators_points_costs_only_those(
    gateway_settings: Callable[..., Settings],
    broker: Broker,
    vm: VictoriaMetrics,
    proxy: StoreProxy,
    prefix: str,
) -> None:
    """The store answers 400 to any write holding one elevator's points (a field type
    conflict, say): those points go to the dead letter with the store's answer, the rest of
    each batch is written, and the gateway never counts the store as down."""
    bad = f"{prefix}-poison"
    proxy.refuse(400, lambda line: f"elevator_id={bad} " in line or f"elevator_id={bad}," in line)
    fleet = [f"{prefix}-{n}" for n in range(FLEET - 1)] + [bad]
    # Batches cut as in production (every 0.5 s): each holds a few of the refused points.
    with Gateway(gateway_settings(tsdb_url=proxy.url, flush_interval_s=0.5)) as gw:
        assert gw.session.wait_connected(10)
        with Stream(broker.url, fleet, RATE) as stream:
            wait_for(lambda: vm.count("elevator_status_seq", prefix) >= 2 * RATE, timeout=20)
            assert gw.writer.healthy
        acked = _stream_keys(stream)
        good = {k for k in acked if k[0] != bad}
        stored = stored_seqs(vm, prefix, good, timeout=90)
        wait_for(lambda: len(_dead(gw)) >= len(acked) - len(good), timeout=20)
        row = record(reconcile("store answers 400 for one elevator's points", stream.sent,
                               acked, stored, _dead(gw)))  # fmt: skip
        assert gw.writer.healthy and gw.spool.depth == 0
        answers = {r["detail"] for r in gw.store.dead_letters(limit=10_000)}
    assert row.lost == 0 and row.duplicates == 0
    assert row.stored == len(good) and row.dead_lettered == {"tsdb_refused": len(acked) - len(good)}
    assert proxy.refused_requests > 0
    assert any(a.startswith("HTTP 400: ") and "refused" in a for a in answers)


def test_a_store_refusing_points_older_than_its_retention_takes_the_newer_ones(
    gateway_settings: Callable[..., Settings],
    broker: Broker,
    vm: VictoriaMetrics,
    proxy: StoreProxy,
    prefix: str,
) -> None:
    """InfluxDB answers 422 for a point older than the bucket's retention, and the gateway
    accepts device time up to 30 days back: a backlog spanning the cutoff is split, the old
    points dead-lettered with the answer, the newer ones stored."""
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=1, seconds=450)  # between two frames, 900 s apart
    cutoff_ns = (cutoff - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    proxy.refuse(422, lambda line: int(line.rsplit(" ", 1)[1]) < cutoff_ns)
    messages = [m for n in range(4) for m in _backlog(f"{prefix}-{n}", 200, 900.0, now)]
    old = {key for _t, payload, key in messages
           if datetime.fromisoformat(json.loads(payload)["ts"]) < cutoff}  # fmt: skip
    settings = gateway_settings(tsdb_url=proxy.url)
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        acked = publish_acked(broker.url, messages)
        stored = stored_seqs(vm, prefix, acked - old)
        wait_for(lambda: len(_dead(gw)) >= len(old), timeout=20)
        row = record(reconcile("store answers 422 for points older than 1 day", len(messages),
                               acked, stored, _dead(gw)))  # fmt: skip
        assert gw.writer.healthy
    assert 0 < len(old) < len(messages)
    assert (row.stored, row.dead_lettered, row.lost, row.duplicates) == (
        len(messages) - len(old), {"tsdb_refused": len(old)}, 0, 0,
    )  # fmt: skip
    # The retention raised, the operator stores the refused lines as they were.
    proxy.release_refusals()
    replay = _cli("deadletter", "replay", "--reason", "tsdb_refused", settings=settings)
    assert f"replayed {len(old)} of {len(old)} tsdb_refused records" in replay
    replayed = stored_seqs(vm, prefix, acked)
    assert sum(len(v) for v in replayed.values()) == len(messages)


@pytest.mark.parametrize("fault", ["hang", "down"])
def test_a_store_that_hangs_or_is_down_loses_nothing(
    gateway_settings: Callable[..., Settings],
    broker: Broker,
    vm: VictoriaMetrics,
    proxy: StoreProxy,
    prefix: str,
    fault: str,
) -> None:
    """The store stops answering (each write waits out the 2 s timeout) or answers 503, under
    200 frames/s: the spool takes the stream and replays it in order once the store is back."""
    seconds = lasting(6, 20) if fault == "hang" else lasting(10, 60)
    fleet = [f"{prefix}-{n}" for n in range(FLEET)]
    with Gateway(gateway_settings(tsdb_url=proxy.url, tsdb_timeout_s=2)) as gw:
        assert gw.session.wait_connected(10)
        with Stream(broker.url, fleet, RATE) as stream:
            wait_for(lambda: vm.count("elevator_status_seq", prefix) >= RATE, timeout=20)
            getattr(proxy, fault)()
            wait_for(lambda: not gw.writer.healthy, timeout=20)
            time.sleep(seconds)
            proxy.release()
            wait_for(lambda: gw.writer.healthy and gw.spool.depth == 0, timeout=60)
        acked = _stream_keys(stream)
        stored = stored_seqs(vm, prefix, acked)
        what = "hangs" if fault == "hang" else "answers 503"
        row = record(reconcile(f"store {what} for {seconds:.0f} s", stream.sent, acked,
                               stored, _dead(gw)))  # fmt: skip
    assert (row.stored, row.lost, row.duplicates, row.dead_lettered) == (len(acked), 0, 0, {})


def test_a_registry_name_with_a_line_break_cannot_break_the_line_protocol(
    gateway_settings: Callable[..., Settings], broker: Broker, vm: VictoriaMetrics, prefix: str
) -> None:
    """A record written before input validation (or by another tool) with a newline in its
    district: the tag is escaped, so the elevator's frames are stored with it."""
    eid = f"{prefix}-reg"
    settings = gateway_settings()
    store = open_store(settings.store_url)
    record_ = {"district": "Wuhou\nWest", "maintenance_company": "Acme, Lifts=Best"}
    store.put_elevator(eid, record_, datetime.now(UTC))  # type: ignore[arg-type]
    store.close()
    messages = _backlog(eid, 50, 1.0, datetime.now(UTC))
    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        acked = publish_acked(broker.url, messages)
        stored = stored_seqs(vm, prefix, acked)
        row = record(reconcile("registry district with a line break", 50, acked, stored,
                               _dead(gw)))  # fmt: skip
    (series,) = vm.export(f'{{__name__="elevator_status_seq",elevator_id="{eid}"}}')
    assert series["metric"]["district"] == "Wuhou West"
    assert series["metric"]["maintenance_company"] == "Acme, Lifts=Best"
    assert (row.stored, row.lost, row.duplicates) == (50, 0, 0)


def test_gateway_kill9_mid_burst_loses_nothing(
    gateway_env: dict[str, str], broker: Broker, tmp_path: Path, prefix: str
) -> None:
    """`kill -9` while a 5,000-frame backlog of 50 devices is being taken in, then a restart:
    every acknowledged frame is stored. A batch the store took before the kill but whose
    acknowledgement died with the process comes again: InfluxDB overwrites such a copy (same
    series and time), and this VictoriaMetrics is run to do the same
    (`-dedup.minScrapeInterval=1ms`)."""
    vm = make_vm(tmp_path / "vm", "-dedup.minScrapeInterval=1ms")
    vm.start()
    env = gateway_env | {"GATEWAY_TSDB_URL": vm.url}
    metrics_url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics"
    now = datetime.now(UTC)
    messages = [m for n in range(50) for m in _backlog(f"{prefix}-{n}", 100, 10.0, now)]
    messages.sort(key=lambda m: m[2][1])  # interleaved, as devices reconnecting together
    gw = start_gateway(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: scrape(metrics_url).get("gateway_broker_connected") == 1.0, timeout=20)
        acked = publish_acked(broker.url, messages[:2500])
        wait_for(lambda: vm.count("elevator_status_seq", prefix) >= 500, timeout=20)
        gw.send_signal(signal.SIGKILL)
        gw.wait()
        acked |= publish_acked(broker.url, messages[2500:])  # the rest queue for it
        gw = start_gateway(env, tmp_path / "gw.log")
        stored = stored_seqs(vm, prefix, acked, timeout=60)
        store = open_store(env["GATEWAY_STORE_URL"])
        dead = dead_letter_keys(store.dead_letters(limit=100_000))
        store.close()
        row = record(reconcile("gateway kill -9 mid-burst, restarted", len(messages), acked,
                               stored, dead, "store overwrites identical points"))  # fmt: skip
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)
        vm.stop()
    assert (row.acknowledged, row.stored, row.lost, row.duplicates) == (5000, 5000, 0, 0)

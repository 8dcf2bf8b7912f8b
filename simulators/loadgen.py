"""Load generator for benchmarks: valid status frames as fast as the broker takes them.

Each worker process owns a disjoint set of elevator ids and one MQTT connection. Frames
are pre-built: the JSON around `seq` is rendered once per elevator, so the hot loop only
joins bytes and publishes at QoS 1 (`seq` still increases by one per elevator). The
reported rate counts frames the broker acknowledged (PUBACK), not frames handed to paho.
One Python process tops out at a few tens of thousands of frames per second; use
`processes` to find out whether the broker or the generator is the bottleneck.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.clock import Clock, RealClock
from simulators.mqtt import QOS, BrokerAddress, make_client

WINDOW = 5000  # unacknowledged frames per worker; enough to keep the broker busy
BATCH = 500  # frames between two reads of the clock and the socket


@dataclass(frozen=True)
class LoadReport:
    processes: int
    sent: int
    acked: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def frame_template(elevator_id: str, boot: int, ts: str, floor: int) -> tuple[bytes, bytes]:
    """The bytes of a status frame before and after its `seq` value."""
    body: dict[str, Any] = {
        "v": 1,
        "elevator_id": elevator_id,
        "seq": 0,
        "boot": boot,
        "ts": ts,
        "floor": floor,
        "moving": True,
        "direction": "up",
        "speed_mps": 1.75,
        "door": "closed",
        "door_zone": False,
        "occupied": True,
        "load_pct": 35.0,
        "mode": "normal",
        "alarm_button": False,
        "power": "mains",
        "safety_circuit": "closed",
    }
    head, tail = json.dumps(body, separators=(",", ":")).split('"seq":0', 1)
    return (head + '"seq":').encode(), tail.encode()


def _worker(
    url: str,
    worker: int,
    ids: list[str],
    rate: float | None,
    duration_s: float,
    start_ts: str,
    results: multiprocessing.Queue[tuple[int, int, float]],
    go: Any,
) -> None:
    clock = RealClock()
    address = BrokerAddress.parse(url)
    boot = int(datetime.fromisoformat(start_ts).timestamp())
    templates = [
        (f"elevators/{e}/status", *frame_template(e, boot, start_ts, i % 20))
        for i, e in enumerate(ids)
    ]
    acked = 0

    def on_publish(*_a: Any) -> None:
        nonlocal acked
        acked += 1

    # No network thread: publish() writes straight to the socket and loop(0) reads the
    # acks in between, which is several times faster than paho's thread fighting ours
    # for the GIL.
    client = make_client(address, f"elevator-load-{worker}-{boot}")
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect(address.host, address.port)
    client.loop(1.0)
    go.wait()
    started = clock.now()
    sent, seq = 0, 0
    n = len(templates)
    while True:
        elapsed = (clock.now() - started).total_seconds()
        if elapsed >= duration_s:
            break
        due = BATCH if rate is None else min(BATCH, int(rate * elapsed) + 1 - sent)
        if due <= 0:
            client.loop(0.005)
            continue
        for _ in range(due):
            topic, head, tail = templates[sent % n]
            if sent % n == 0 and sent:
                seq += 1
            client.publish(topic, head + str(seq).encode() + tail, qos=QOS)
            sent += 1
        client.loop(0)
        while sent - acked > WINDOW:
            client.loop(0.01)
    # Frames still unacknowledged after a grace period count as not delivered.
    grace = clock.now()
    while acked < sent and (clock.now() - grace).total_seconds() < 10:
        client.loop(0.01)
    seconds = (clock.now() - started).total_seconds()
    client.disconnect()
    results.put((sent, acked, seconds))


def run_load(
    url: str,
    rate: float | None,
    elevators: int,
    duration_s: float,
    processes: int = 1,
    clock: Clock | None = None,
) -> LoadReport:
    """Publish for `duration_s` wall seconds at `rate` frames/s in all (None: as fast as
    possible) from `processes` processes; return what the broker acknowledged."""
    if processes < 1 or elevators < processes:
        raise ValueError("need processes >= 1 and at least one elevator per process")
    BrokerAddress.parse(url)  # fail here, not in every worker
    start_ts = (clock or RealClock()).now().isoformat(timespec="milliseconds")
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[int, int, float]] = ctx.Queue()
    go = ctx.Barrier(processes + 1)
    ids = [f"LOAD{n:06d}" for n in range(elevators)]
    share = None if rate is None else rate / processes
    workers = [
        ctx.Process(
            target=_worker,
            args=(url, w, ids[w::processes], share, duration_s, start_ts, results, go),
            daemon=True,
        )
        for w in range(processes)
    ]
    for p in workers:
        p.start()
    go.wait(timeout=60)  # all connect first, then all start together
    outcomes = [results.get(timeout=duration_s + 60) for _ in workers]
    for p in workers:
        p.join()
    return LoadReport(
        processes,
        sum(o[0] for o in outcomes),
        sum(o[1] for o in outcomes),
        max(o[2] for o in outcomes),
    )

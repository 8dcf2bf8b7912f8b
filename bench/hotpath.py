"""CPU per frame on the gateway's hot path, without the network: rate limit, decode, dedup,
black box, rules, line protocol, batching, against `json.loads` of the same payloads in the
same run (the least any JSON gateway must do per frame), so noise cancels in the ratio.

Frames are fed straight to the pipeline as the worker thread gets them; telemetry goes to a
sink that drops it. `--profile` prints the top functions by own time (cProfile).

    python bench/hotpath.py --frames 200000 --elevators 20000
    python bench/hotpath.py --frames 50000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import logs
from gateway.clock import FixedClock
from gateway.deadletter import DeadLetter
from gateway.frames import Frame
from gateway.incidents.service import IncidentService, Policy
from gateway.incidents.sla import Limits
from gateway.ingest import AckToken, RawMessage
from gateway.pipeline import Pipeline
from gateway.rules import RuleEngine, load_rules
from gateway.spool import Point, Spool
from gateway.store import open_store
from gateway.tsdb import DurableWriter


class _Discard:
    """Telemetry is not what is measured here: drop it."""

    def write(self, points: list[Point]) -> None:
        pass

    def close(self) -> None:
        pass


def _messages(frames: int, elevators: int, now: datetime) -> list[RawMessage]:
    ts = now.isoformat()
    out = []
    for n in range(frames):
        eid = f"H{n % elevators:06d}"
        seq = n // elevators
        body = {"v": 1, "elevator_id": eid, "seq": seq, "boot": 1, "ts": ts,
                "floor": (seq + n) % 20, "moving": seq % 3 != 0, "direction": "up",
                "speed_mps": 1.0 if seq % 3 else 0.0, "door": "closed" if seq % 3 else "open",
                "door_zone": seq % 3 == 0, "occupied": seq % 2 == 0, "load_pct": 30.0,
                "mode": "normal", "alarm_button": False, "power": "mains",
                "safety_circuit": "closed"}  # fmt: skip
        out.append(
            RawMessage(f"elevators/{eid}/status", json.dumps(body).encode(), now, AckToken(n, 1))
        )
    return out


def build_pipeline(work: Path, now: datetime) -> Pipeline:
    """Assembled as gateway.app assembles it: black box first, then the rules."""
    store = open_store(f"sqlite:///{work / 'g.db'}")
    writer = DurableWriter(_Discard(), Spool(work / "spool", 1 << 30), FixedClock(now))
    incidents = IncidentService(store, Policy(Limits(1800, 1200, 180)))
    engine = RuleEngine(load_rules())

    def detect(frame: Frame) -> None:
        for alert in engine.observe(frame, frame.received_at):  # as gateway.app does
            incidents.on_alert(alert)

    return Pipeline(
        writer,
        DeadLetter(store, lambda _t, _p: None, 100, 65536),
        consumers=[incidents.on_frame, detect],
    )


def _run(pipeline: Pipeline, messages: list[RawMessage], batch: int) -> float:
    start = time.process_time()
    for i, raw in enumerate(messages, 1):
        pipeline.process(raw)
        if i % batch == 0:
            pipeline.flush()
    pipeline.flush()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--elevators", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    args = parser.parse_args()
    logs.configure("warning")

    now = datetime.now(UTC)
    messages = _messages(args.frames, args.elevators, now)
    pipeline = build_pipeline(Path(tempfile.mkdtemp(prefix="bench-hot-")), now)

    start = time.process_time()
    for raw in messages:
        json.loads(raw.payload)
    baseline = time.process_time() - start

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    used = _run(pipeline, messages, args.batch)
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    per_frame = used / args.frames * 1e6
    base_per_frame = baseline / args.frames * 1e6
    print(f"baseline json.loads: {base_per_frame:.1f} us/frame")
    print(f"pipeline: {per_frame:.1f} us/frame = {1e6 / per_frame:,.0f} frames/s per core")
    print(f"ratio pipeline/json.loads: {per_frame / base_per_frame:.1f}")


if __name__ == "__main__":
    main()

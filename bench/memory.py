"""Resident memory per tracked elevator: every per-elevator structure of the hot path (rate
limit, dedup, black box, rule engine state and timers, last online state), filled by real
frames for N distinct elevators, against the same process before the frames (the baseline).

Reported twice: after each elevator's first frame (its tracking state: rate limit, dedup
window, rule state and timers, last online state, and a black box of one frame), and in
steady state, after it has reported every --every-s seconds (10, the fleet's cadence) for
as long as the black box holds a frame (its 120 s window, and up to an eighth more before
older frames are dropped), so the black box holds as many frames as it does at most in
service. Each elevator reports at its own moment of the cadence, as a fleet does.

Seqs are large, as in service (no small ints, which Python shares). Each dedup bitmap is
as wide as in an elevator's first 256 frames after a start (after that it is 0 for a
device that sends in order). Each car's door opens at its second frame and closes at its
third, and `moving` (with the speed) changes on --changed of its frames (0: the periodic
frames of a car at rest repeat its status; 1: every frame has a new status, floats and all,
the most the black box holds at this cadence).

    python bench/memory.py --elevators 100000
    python bench/memory.py --elevators 100000 --every-s 5
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import logs
from gateway.incidents.blackbox import HELD
from gateway.ingest import AckToken, RawMessage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpath import build_pipeline


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elevators", type=int, default=100_000)
    parser.add_argument("--every-s", type=float, default=10.0, help="each elevator's cadence")
    parser.add_argument(
        "--changed", type=float, default=0.25, help="share of frames on which `moving` changes"
    )
    args = parser.parse_args()
    rounds = int(HELD / timedelta(seconds=args.every_s)) + 1
    logs.configure("warning")

    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    now = datetime.now(UTC)
    pipeline = build_pipeline(work, now)
    gc.collect()
    baseline = _rss_kib()
    first = 0
    for round_ in range(rounds):
        seq = 1_000_000 + round_
        moving = int(round_ * args.changed) % 2 == 1
        for n in range(args.elevators):
            # Each elevator at its own moment of the cadence, as a fleet reports.
            at = now + timedelta(seconds=(round_ + n / args.elevators) * args.every_s)
            ts = at.isoformat()
            eid = f"M{n:07d}"
            body = {"v": 1, "elevator_id": eid, "seq": seq, "boot": 1, "ts": ts,
                    "floor": n % 20, "moving": moving, "direction": "up",
                    "speed_mps": 1.0 if moving else 0.0,
                    "door": "open" if round_ == 1 else "closed", "door_zone": True,
                    "occupied": False, "load_pct": 30.0, "mode": "normal",
                    "alarm_button": False, "power": "mains",
                    "safety_circuit": "closed"}  # fmt: skip
            raw = RawMessage(
                f"elevators/{eid}/status", json.dumps(body).encode(), at, AckToken(n, 1)
            )
            pipeline.process(raw)
            if n % 5000 == 4999:
                pipeline.flush()
        pipeline.flush()
        if round_ == 0:
            gc.collect()
            first = _rss_kib() - baseline
    gc.collect()
    used = _rss_kib() - baseline
    print(
        f"tracked elevators: {pipeline.tracked_elevators:,}, {rounds} frames each, "
        f"{args.every_s:g} s apart, `moving` changing on {args.changed:.0%} of them"
    )
    print(f"RSS before frames (baseline): {baseline / 1024:.1f} MiB")
    for what, kib in (("after the first frame", first), (f"after {rounds} frames", used)):
        print(
            f"RSS added by {args.elevators:,} elevators {what}: {kib / 1024:.1f} MiB "
            f"= {kib * 1024 / args.elevators:.0f} bytes per elevator (target <= 1024)"
        )


if __name__ == "__main__":
    main()

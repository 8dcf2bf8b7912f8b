"""Cost of evaluating the default rules, and why the engine compiles its own conditions.

1. Every status-stream condition and exclusion of `alert_rules/` evaluated against one car
   state, by each candidate: `rule-engine`, `simpleeval` (restricted, pre-parsed),
   `cel-python` (compiled program), and `gateway.rules.expr` (Python's parser, typed
   checks, closures). Candidates not installed are skipped.
2. The engine end to end: `RuleEngine.observe` per status and event frame over 10,000
   elevators, `tick` with 100,000 tracked elevators, and memory per tracked elevator.

    python bench/rules_eval.py
"""

from __future__ import annotations

import gc
import random
import re
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.frames import EventBody, Frame, StatusBody
from gateway.rules import RuleEngine, load_rules

STATE = {
    "floor": 3, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
    "door_zone": False, "occupied": True, "load_pct": 20.0, "mode": "normal",
    "alarm_button": False, "power": "mains", "safety_circuit": "closed", "status_seen": True,
    "occupied_latched": True, "online": True, "since_moving_s": 12.0, "door_cycles_60s": 1,
    "code": "", "state": "",
}  # fmt: skip


def per_call_us(fn: Callable[[], Any], seconds: float = 0.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - start) / n * 1e6


def candidates(sources: list[str]) -> dict[str, Callable[[], Any] | str]:
    out: dict[str, Callable[[], Any] | str] = {}
    try:
        import rule_engine

        ctx = rule_engine.Context(default_value=None)
        rules = [rule_engine.Rule(s, context=ctx) for s in sources]
        out["rule-engine"] = lambda: [r.matches(STATE) for r in rules]
    except ImportError:
        out["rule-engine"] = "not installed"
    try:
        import simpleeval

        ev = simpleeval.EvalWithCompoundTypes(names=STATE)
        parsed = [(s, ev.parse(s)) for s in sources]
        out["simpleeval"] = lambda: [ev.eval(s, previously_parsed=p) for s, p in parsed]
    except ImportError:
        out["simpleeval"] = "not installed"
    try:
        import celpy

        env = celpy.Environment()
        progs = [env.program(env.compile(_to_cel(s))) for s in sources]
        act = celpy.json_to_cel(STATE)
        out["cel-python"] = lambda: [p.evaluate(act) for p in progs]
    except ImportError:
        out["cel-python"] = "not installed"
    from gateway.rules.expr import SHARED_STATUS, compile_expr

    class Car:  # as the engine's: the fields in SHARED_STATUS are read from `status`
        __slots__ = (*STATE, "status")

    car, status = Car(), Car()
    for k, v in STATE.items():
        setattr(status if k in SHARED_STATUS else car, k, v)
    car.status = status
    fns = [compile_expr(s).fn for s in sources]
    out["gateway.rules.expr"] = lambda: [f(car) for f in fns]
    return out


def _to_cel(source: str) -> str:
    s = re.sub(r"(\w+) not in (\[[^\]]*\])", r"!(\1 in \2)", source)
    s = re.sub(r"\bnot\s+", "!", s)
    return s.replace(" and ", " && ").replace(" or ", " || ")


def engine_numbers() -> None:
    rules = load_rules()
    rng = random.Random(1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    n_cars = 10_000
    ids = [f"E{i:06d}" for i in range(n_cars)]
    engine = RuleEngine(rules, site_of=lambda e: f"S{int(e[1:]) // 4}")
    frames = []
    for i in range(50_000):
        eid = ids[rng.randrange(n_cars)]
        fields = {
            "v": 1, "elevator_id": eid, "seq": i, "boot": 1, "ts": t0, "floor": 2,
            "moving": rng.random() < 0.4, "direction": "none", "speed_mps": 0.0,
            "door": rng.choice(["open", "closed", "closed", "closing"]),
            "door_zone": rng.random() < 0.9, "occupied": rng.random() < 0.5,
            "load_pct": 10.0, "mode": "normal", "alarm_button": False,
            "power": "mains" if rng.random() < 0.99 else "battery", "safety_circuit": "closed",
        }  # fmt: skip
        body = msgspec.convert(fields, StatusBody)
        frames.append(Frame("status", eid, t0, body))
    # Warm up: every car known, so the timed loop measures steady state.
    for eid in ids:
        engine.observe(Frame("online", eid, t0, None, online=True), t0)
    times = [t0 + timedelta(milliseconds=i) for i in range(len(frames))]
    start = time.perf_counter()
    for f, now in zip(frames, times, strict=True):
        engine.observe(f, now)
    status_us = (time.perf_counter() - start) / len(frames) * 1e6
    events = [
        Frame(
            "event", eid, t0,
            EventBody(v=1, elevator_id=eid, seq=1, boot=1, ts=t0,
                      code=rng.choice(["OVERSPEED", "DOOR_LOCK_FAULT", "CREW_ON_SITE"]),
                      state=rng.choice(["raised", "cleared"])),
        )
        for eid in ids[:5000]
    ]  # fmt: skip
    times = [t0 + timedelta(seconds=50, milliseconds=i) for i in range(len(events))]
    start = time.perf_counter()
    for f, now in zip(events, times, strict=True):
        engine.observe(f, now)
    event_us = (time.perf_counter() - start) / len(events) * 1e6
    print(f"observe, status frame (all {len(rules.rules)} rules, 10k cars): {status_us:6.2f} µs")
    print(f"observe, event frame:                                {event_us:6.2f} µs")

    # tick with 100,000 tracked elevators, nothing due and a little due.
    big = RuleEngine(rules)
    for i in range(100_000):
        big.observe(Frame("online", f"B{i}", t0, None, online=True), t0)
    now = t0 + timedelta(seconds=1)
    tick_idle_us = per_call_us(lambda: big.tick(now), 0.3)
    print(f"tick, 100k elevators tracked, nothing due:          {tick_idle_us:6.2f} µs")

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem = RuleEngine(rules)
    sample = frames[:2000]
    for i, f in enumerate(sample):
        eid = f"M{i}"
        body = msgspec.structs.replace(f.body, elevator_id=eid)  # type: ignore[type-var]
        mem.observe(Frame("status", eid, t0, body), t0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"memory per tracked elevator (car, index, timers):    {(after - before) / 2000:6.0f} B")


def main() -> None:
    rules = load_rules()
    sources = [r.condition.source for r in rules.rules if r.stream == "status"]
    sources += [m.condition.source for m in rules.mutes]
    print(f"{len(sources)} conditions (status rules + exclusions), one car state, per frame:")
    for name, fn in candidates(sources).items():
        if isinstance(fn, str):
            print(f"  {name:20s} {fn}")
            continue
        us = per_call_us(fn)
        print(f"  {name:20s} {us:9.2f} µs/frame  {us / len(sources):8.3f} µs/condition")
    engine_numbers()


if __name__ == "__main__":
    main()

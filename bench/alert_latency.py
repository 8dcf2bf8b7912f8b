"""Alert latency under load: from the status frame that completes an entrapment condition,
plus the rule's hold, to the alert on `dispatch/alerts`, with one gateway process at a
fraction (default 50%) of the capacity measured in the same run.

Everything as in production: Mosquitto, VictoriaMetrics, the gateway as its own process
(`python -m gateway run`) on its default settings (tick interval, flush interval, receive
window), a SQLite store and the packaged rules with their real holds (20 s, 30 s, 45 s).

1. Capacity: N status frames are queued in the gateway's persistent session (the load of
   bench/throughput.py) and the fleet's series are written to the store once (its warm
   store), then the gateway starts and drains them; frames/s from its /metrics
   (`gateway_frames_accepted_total`).
2. Load: for --duration seconds, publisher processes send status frames of the same fleet,
   paced at --load x that rate, QoS 1 (the cars alternate moving and stopped at a landing
   with the door open, as in 1). They publish on libmosquitto at nice 19: they stand in for
   devices, which are not on the gateway's machine. The load reported is what the gateway
   accepted; more than 10% short of the target makes the run inconclusive.
3. Meanwhile --entrapments other elevators, their alerts falling due evenly over the run and
   cycling over the four status entrapment rules (between floors, at a landing, power cut,
   alarm held), each send a moving frame, then the frame that traps the passenger, then
   keep reporting that state every 5 s as a trapped car does. A subscriber on
   dispatch/alerts takes each `opened` entrapment alert: latency = received - (completing
   frame published + the rule's hold). The alert's `at` (receive time + hold, stamped by
   the gateway) splits it into ingest (publish -> gateway) and alerting (rules -> incident
   -> outbox -> MQTT). A missing alert fails the run (exit status 1).

    python bench/alert_latency.py
    python bench/alert_latency.py --load 0.5 --entrapments 200 --duration 150

Under faults (issue 21), `--fault` starts the load phase with one of: `webhooks` (three
alert webhook endpoints that accept connections and never answer, 60 s webhook timeout),
`store` (the time-series store behind a proxy that holds every request 5 s; the proxy runs
in a process of its own, as a store elsewhere would, so forwarding the writes never takes
the GIL from this process's publisher and subscriber, whose clocks measure), `database`
(a PostgreSQL store whose gateway backends are stopped with SIGSTOP for --pause seconds
halfway through the run, on the machine's shared server), `restart` (a PostgreSQL server of
the benchmark's own, restarted once halfway through: connections cut, refused until it is
back). `--faults` runs the healthy case and each fault in turn, one process each.

An alert that falls due while the database does not answer can only go out once it answers
(an alert is published once its incident is stored): those are reported apart, as their
delay beyond the outage's end, and the p99 target applies to the others. Alerts due just
before it and still on their way when it began are named too (their delay past its end),
but stay in the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymosquitto.client import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from scaleout import _accepted  # noqa: E402 - the /metrics reader of bench/scaleout
from throughput import _create_session, queue_frames, warm_store  # noqa: E402 - as it measures

from gateway.rules import load_rules  # noqa: E402
from gateway.settings import PACKAGED_RULES_DIR, Settings  # noqa: E402
from tests.gateways import healthy, start_gateway  # noqa: E402
from tests.services import (  # noqa: E402
    PrivatePostgres,
    StallingProxy,
    free_port,
    make_broker,
    make_pg_database,
    make_vm,
    paused_backends,
)

_CLIENT_ID = "bench-alert-gateway"
_KEEPALIVE_S = 5.0  # a trapped car goes on reporting its state
_PRELUDE_S = 2.0  # the moving frame before the one that traps
_INFLIGHT = 1000  # background frames a load process has waiting for the broker's PUBACK

# A car stopped between floors with a passenger, door closed: what the traps start from.
_BASE: dict[str, Any] = {
    "v": 1,
    "boot": 1,
    "floor": 3,
    "moving": False,
    "direction": "none",
    "speed_mps": 0.0,
    "door": "closed",
    "door_zone": False,
    "occupied": True,
    "load_pct": 30.0,
    "mode": "normal",
    "alarm_button": False,
    "power": "mains",
    "safety_circuit": "closed",
}

# The frame that completes each status entrapment rule of alert_rules/entrapment.yaml.
_TRAPS: dict[str, dict[str, Any]] = {
    "trapped_between_floors": {"door": "closed", "door_zone": False},
    "trapped_at_landing": {"door": "closed", "door_zone": True},
    "trapped_power_cut": {"door": "closed", "door_zone": True, "power": "battery"},
    "alarm_held": {"door": "open", "door_zone": True, "alarm_button": True},
}
_MOVING = {"moving": True, "direction": "up", "speed_mps": 1.0, "door_zone": False}
_AT_LANDING = {"door": "open", "door_zone": True}  # the fleet's stops: as bench/throughput.py


def _template(eid: str, **fields: Any) -> bytes:
    """A status frame as a %-template of (seq, ts): the load processes format, not serialise."""
    text = json.dumps(_BASE | {"elevator_id": eid, "seq": 0, "ts": ""} | fields)
    return text.replace('"seq": 0', '"seq": %d').replace('"ts": ""', '"ts": "%s"').encode()


def _status(eid: str, seq: int, ts: str, **fields: Any) -> bytes:
    return _template(eid, **fields) % (seq, ts.encode())


def _paced(
    port: int,
    worker: int,
    workers: int,
    rate: float,
    start_at: float,
    duration: float,
    elevators: int,
    first_seq: int,
    acked: Any,
) -> None:
    """Status frames of this worker's share of the fleet at `rate`/s, QoS 1, round-robin
    over its elevators (one round = one seq), from `start_at` for `duration` seconds.

    On libmosquitto: paho's Python protocol code cannot publish this fast from two processes
    that share the cores with the broker and the gateway, and every cycle the load generator
    spends is taken from the gateway. `acked` counts what the broker acknowledged, so the
    load reported is the load delivered; no more than _INFLIGHT wait for the broker.

    At the lowest CPU priority: they stand in for devices, which do not share the gateway's
    machine; here they run on what the gateway, broker and store leave (the load reached is
    reported, and a shortfall makes the run inconclusive)."""
    os.nice(19)
    client = Mosquitto(client_id=f"bench-bg-{worker}")
    client.max_inflight_messages_set(_INFLIGHT)
    done = 0

    def on_publish(*_args: object) -> None:  # on libmosquitto's thread
        nonlocal done
        done += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    mine = [f"B{n:06d}" for n in range(worker, elevators, workers)]
    topics = [f"elevators/{eid}/status" for eid in mine]
    states = {
        False: [_template(eid, **_MOVING) for eid in mine],
        True: [_template(eid, **_AT_LANDING) for eid in mine],
    }
    per_s = rate / workers
    n = i = 0
    seq = first_seq
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    while (elapsed := time.time() - t0) < duration:
        ts = datetime.now(UTC).isoformat().encode()
        templates = states[seq % 2 == 1]
        due = min(int(elapsed * per_s) - n, _INFLIGHT - (n - done))
        for _ in range(max(0, due)):
            client.publish(topics[i], templates[i] % (seq, ts), qos=1)
            n += 1
            i += 1
            if i == len(mine):
                i, seq = 0, seq + 1
                templates = states[seq % 2 == 1]
        time.sleep(0.005)
    acked.value = done
    client.disconnect()
    client.loop_stop(False)


@dataclass
class _Trap:
    eid: str
    rule: str
    hold: float
    complete_at: float  # seconds into the run
    published: float | None = None  # epoch seconds the completing frame was handed to paho
    seq: int = 0


@dataclass
class _Alerts:
    """What the dispatch/alerts subscriber saw."""

    traps: dict[str, _Trap]
    lock: threading.Lock = field(default_factory=threading.Lock)
    first: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)  # type/kind -> count
    duplicates: int = 0  # a trap's `opened` alert seen again
    fleet_entrapments: int = 0  # background cars alerted as trapped: must be none

    def on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        received = time.time()
        alert = json.loads(msg.payload)
        eid, key = alert.get("elevator_id"), f"{alert.get('type')}/{alert.get('kind')}"
        with self.lock:
            if eid in self.traps and key == "opened/entrapment":
                if eid in self.first:
                    self.duplicates += 1
                else:
                    self.first[eid] = (received, alert)
                return
            self.other[key] = self.other.get(key, 0) + 1
            if key == "opened/entrapment" and eid not in self.traps:
                self.fleet_entrapments += 1


def _entrapments(client: paho.Client, traps: list[_Trap], t0: float, end: float) -> None:
    """Each trap: a moving frame, the frame that completes its rule, then that state every
    few seconds until `end` (epoch seconds)."""
    events: list[tuple[float, int, _Trap]] = []
    for trap in traps:
        events.append((trap.complete_at - _PRELUDE_S, 0, trap))
        events.append((trap.complete_at, 1, trap))
        t = trap.complete_at + _KEEPALIVE_S
        while t0 + t < end:
            events.append((t, 2, trap))
            t += _KEEPALIVE_S
    events.sort(key=lambda e: (e[0], e[1]))
    for at, step, trap in events:
        time.sleep(max(0.0, t0 + at - time.time()))
        ts = datetime.now(UTC).isoformat()
        fields = _TRAPS[trap.rule] if step else _MOVING
        payload = _status(trap.eid, trap.seq, ts, **fields)
        trap.seq += 1
        now = time.time()
        client.publish(f"elevators/{trap.eid}/status", payload, qos=1)
        if step == 1:
            trap.published = now


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _summary(name: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (
        f"{name}: p50 {_pct(ms, 50):7.1f} ms   p99 {_pct(ms, 99):7.1f} ms   "
        f"max {max(ms):7.1f} ms   (mean {statistics.fmean(ms):.1f}, min {min(ms):.1f})"
    )


def _measure_capacity(env: dict[str, str], frames: int, timeout: float = 300) -> float:
    """Frames/s of the gateway draining its queued session, from its first accepted frame
    seen on /metrics to the last."""
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _accepted(env)
        now = time.perf_counter()
        if done and first is None:
            first = (now, done)
        if done >= frames:
            assert first is not None
            if now - first[0] < 1.0:
                raise RuntimeError("the backlog drained too fast to time: raise --frames")
            return (done - first[1]) / (now - first[0])
        time.sleep(0.2)  # polling /metrics costs the gateway CPU too
    raise RuntimeError(f"the gateway did not take {frames} frames within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load", type=float, default=0.5, help="fraction of capacity")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds under load")
    parser.add_argument("--entrapments", type=int, default=200, help="trapped elevators")
    parser.add_argument("--frames", type=int, default=100_000, help="backlog for capacity")
    parser.add_argument("--elevators", type=int, default=10_000, help="background fleet")
    parser.add_argument("--publishers", type=int, default=2, help="load processes")
    parser.add_argument(
        "--rules-dir",
        type=Path,
        default=PACKAGED_RULES_DIR,
        help="rules for the gateway (GATEWAY_RULES_DIR); holds are read from it",
    )
    parser.add_argument(
        "--fault", choices=_FAULTS, default="none", help="fault during the load phase"
    )
    parser.add_argument("--faults", action="store_true", help="healthy, then each fault")
    parser.add_argument("--pause", type=float, default=5.0, help="database fault: seconds")
    args = parser.parse_args()
    if args.faults:
        return _all_faults(sys.argv[1:])

    rules = {r.id: r for r in load_rules(args.rules_dir).rules}
    holds = {rule: float(rules[rule].hold) for rule in _TRAPS}
    longest = max(holds.values())
    if args.duration < longest + 20:
        parser.error(f"--duration must be at least {longest + 20:.0f} s (longest hold + 20 s)")
    defaults = Settings.model_fields
    print(
        f"gateway on production defaults: tick every {defaults['tick_interval_s'].default} s, "
        f"flush every {defaults['flush_interval_s'].default} s, receive window "
        f"{defaults['mqtt_receive_window'].default}; rules {args.rules_dir} "
        f"(holds: {', '.join(f'{r} {h:g} s' for r, h in holds.items())}); {os.cpu_count()} cores"
    )

    print(f"machine load average before: {os.getloadavg()[0]:.1f}; fault: {args.fault}")
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    broker, vm = make_broker(work / "broker"), make_vm(work / "vm")
    broker.start()
    vm.start()
    # The faults' parts; the store's proxy passes requests on untouched until the load phase.
    proxy = _ProxyProcess(vm.port) if args.fault == "store" else None
    hanging = [StallingProxy(0, hanging=True) for _ in range(3 if args.fault == "webhooks" else 0)]
    db = make_pg_database() if args.fault == "database" else None
    server = PrivatePostgres() if args.fault == "restart" else None
    if server is not None:
        server.start()
    outage: list[float] = []  # epoch seconds the database stopped and came back
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {
        "PYTHONPATH": str(ROOT),
        "GATEWAY_MQTT_URL": broker.url,
        "GATEWAY_MQTT_CLIENT_ID": _CLIENT_ID,
        "GATEWAY_TSDB_URL": proxy.url if proxy else vm.url,
        "GATEWAY_STORE_URL": (
            db.url if db else server.url if server else f"sqlite:///{work / 'gateway.db'}"
        ),
        "GATEWAY_SPOOL_DIR": str(work / "spool"),
        "GATEWAY_HTTP_PORT": str(free_port()),
        "GATEWAY_RULES_DIR": str(args.rules_dir),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    if hanging:
        env["GATEWAY_ALERT_WEBHOOKS"] = json.dumps([f"{h.url}/hook" for h in hanging])
        env["GATEWAY_WEBHOOK_TIMEOUT_S"] = "60"
    gateway = None
    clients: list[paho.Client] = []
    try:
        # 1. Capacity: drain a queued backlog.
        _create_session(broker.port, _CLIENT_ID)
        queue_frames(broker.port, args.frames, args.elevators, args.publishers)
        warm_store(vm.url, args.elevators)  # as bench/throughput.py: the fleet's series exist
        gateway = start_gateway(env, work / "gateway.log")
        capacity = _measure_capacity(env, args.frames)
        print(
            f"capacity: {capacity:,.0f} frames/s (gateway draining {args.frames:,} queued "
            f"frames of {args.elevators:,} elevators)"
        )
        deadline = time.monotonic() + 30
        while not healthy(env) and time.monotonic() < deadline:
            time.sleep(0.1)

        # 2 and 3. Paced load, entrapments, and the dispatch subscriber.
        rate = capacity * args.load
        if args.elevators / rate > 10:
            # Each car reports every elevators/rate s; past the rules' silence window it would
            # go offline, and a car stopped between floors that long would be trapped.
            raise SystemExit(
                f"at {rate:,.0f} frames/s each of {args.elevators:,} elevators reports only every "
                f"{args.elevators / rate:.0f} s (at most 10 s): lower --elevators"
            )
        span = (longest + 5, args.duration - 5)  # when the alerts fall due
        names = list(_TRAPS)
        traps = []
        for n in range(args.entrapments):
            rule = names[n % len(names)]
            due = span[0] + (span[1] - span[0]) * n / max(1, args.entrapments - 1)
            traps.append(_Trap(f"T{n:05d}", rule, holds[rule], due - holds[rule]))
        seen = _Alerts({t.eid: t for t in traps})
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-alert-dispatch")
        subscribed = threading.Event()
        sub.on_subscribe = lambda *_a: subscribed.set()
        sub.on_message = seen.on_message
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        sub.subscribe("dispatch/alerts", qos=1)
        subscribed.wait(10)
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-alert-cars")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        clients = [sub, pub]

        first_seq = -(-args.frames // args.elevators)  # after the backlog's seqs
        t0 = time.time() + 1.0  # the publisher processes are up by then
        acked = [multiprocessing.Value("q", 0) for _ in range(args.publishers)]
        shape = (args.publishers, rate, t0, args.duration, args.elevators, first_seq)
        load = [
            multiprocessing.Process(target=_paced, args=(broker.port, w, *shape, acked[w]))
            for w in range(args.publishers)
        ]
        for p in load:
            p.start()
        time.sleep(max(0.0, t0 - time.time()))
        if proxy is not None:
            proxy.delay_s.value = 5.0
        at = t0 + args.duration / 2
        if db is not None:
            threading.Thread(target=_pause_database, args=(db.name, at, args.pause, outage)).start()
        if server is not None:
            threading.Thread(target=_restart_database, args=(server, at, outage)).start()
        accepted0 = _accepted(env)
        _entrapments(pub, traps, t0, t0 + args.duration)
        time.sleep(max(0.0, t0 + args.duration - time.time()))
        accepted1 = _accepted(env)
        for p in load:
            p.join()
        # Every alert is due by the end of the run; give the last ones time to arrive.
        deadline = time.time() + 15
        while len(seen.first) < len(traps) and time.time() < deadline:
            time.sleep(0.1)

        # Report.
        print(f"machine load average after the run: {os.getloadavg()[0]:.1f} (other work too)")
        acked_total = sum(a.value for a in acked)
        reached = (accepted1 - accepted0) / args.duration / capacity
        print(
            f"background load: target {rate:,.0f} frames/s ({args.load:.0%} of capacity); "
            f"acknowledged by the broker {acked_total / args.duration:,.0f}/s, gateway accepted "
            f"{(accepted1 - accepted0) / args.duration:,.0f}/s ({reached:.0%} of capacity) over "
            f"{args.duration:g} s ({args.publishers} publisher processes, {args.elevators:,} "
            "elevators, QoS 1)"
        )
        with seen.lock:
            first = dict(seen.first)
            other = dict(seen.other)
        latencies, ingest, alerting, wrong_rule = [], [], [], []
        during: list[float] = []  # due while the database was away: delay past its return
        caught: list[float] = []  # due before it went away, out after: the same
        for trap in traps:
            if trap.eid not in first or trap.published is None:
                continue
            received, alert = first[trap.eid]
            due = trap.published + trap.hold
            if outage and outage[0] <= due <= outage[1]:
                during.append(received - outage[1])
                continue
            if outage and due < outage[0] < received:
                caught.append(received - outage[1])
            at = datetime.fromisoformat(alert["at"]).timestamp()
            latencies.append(received - due)
            ingest.append(at - due)
            alerting.append(received - at)
            if alert.get("rule") != trap.rule:
                wrong_rule.append(f"{trap.eid}: expected {trap.rule}, got {alert.get('rule')}")
        print(
            f"entrapment alerts: expected {len(traps)}, received {len(first)}, "
            f"duplicates {seen.duplicates}"
        )
        if hanging:
            print(f"webhook connections held unanswered: {sum(h.held for h in hanging)}")
        for rule in names:
            got = [
                first[t.eid][0] - t.published - t.hold
                for t in traps
                if t.rule == rule and t.eid in first and t.published
            ]
            if got:
                print(f"  {rule:24s} hold {holds[rule]:4g} s: {_summary('latency', got)}")
        ok = True
        if outage:
            print(
                f"database away {outage[1] - outage[0]:.2f} s: {len(during)} alerts fell due "
                f"meanwhile, out {_summary('after it answered again', during)}"
                if during
                else f"database away {outage[1] - outage[0]:.2f} s: no alert fell due meanwhile"
            )
            if caught:
                print(
                    f"  {len(caught)} alert(s) due before it went away were on their way when it "
                    f"did: {_summary('out after it answered again', caught)}"
                )
            print("the figures below are the alerts that fell due while it answered")
        if latencies:
            print(_summary("alert latency (published + hold -> on dispatch/alerts)", latencies))
            print("  split by the alert's `at` (the gateway's receive time + hold):")
            print("  " + _summary("ingest   (published -> received by the gateway)", ingest))
            print("  " + _summary("alerting (due -> on dispatch/alerts)           ", alerting))
            verdict = "met" if _pct(latencies, 99) * 1000 <= 250 else "NOT MET"
            if reached < 0.9 * args.load:
                verdict += f", but the load generator reached only {reached:.0%}: inconclusive"
            print(f"target p99 <= 250 ms at {args.load:.0%} load: {verdict}")
        missing = [t.eid for t in traps if t.eid not in first]
        if missing:
            ok = False
            print(
                f"!!! MISSED ALERTS: {len(missing)} of {len(traps)} entrapments never reached "
                f"dispatch/alerts: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
            )
        if wrong_rule:
            ok = False
            print(f"!!! ALERTS FROM THE WRONG RULE: {'; '.join(wrong_rule[:10])}")
        if seen.duplicates:
            ok = False
            print(f"!!! {seen.duplicates} entrapment alerts came more than once")
        if seen.fleet_entrapments:
            ok = False
            print(f"!!! {seen.fleet_entrapments} entrapment alerts for background elevators")
        if other:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(other.items()))
            print(f"other alerts on dispatch/alerts meanwhile (type/kind: count): {counts}")
        return 0 if ok else 1
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(timeout=60)
            except Exception:
                gateway.kill()
                gateway.wait()
        broker.stop()
        vm.stop()
        for part in (proxy, *hanging):
            if part is not None:
                part.close()
        if db is not None:
            db.drop()
        if server is not None:
            server.remove()
        shutil.rmtree(work, ignore_errors=True)


_FAULTS = ("none", "webhooks", "store", "database", "restart")


class _ProxyProcess:
    """A `StallingProxy` in front of `target_port`, run in a process of its own; its delay
    is the shared `delay_s`."""

    def __init__(self, target_port: int) -> None:
        self.delay_s = multiprocessing.Value("d", 0.0)
        port = multiprocessing.Value("i", 0)
        self._process = multiprocessing.Process(
            target=_run_proxy, args=(target_port, port, self.delay_s), daemon=True
        )
        self._process.start()
        while not port.value:
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port.value}"

    def close(self) -> None:
        self._process.terminate()
        self._process.join()


def _run_proxy(target_port: int, port: Any, delay_s: Any) -> None:
    proxy = StallingProxy(target_port)
    port.value = proxy.port
    while True:
        proxy.delay_s = delay_s.value
        time.sleep(0.05)


def _pause_database(name: str, at: float, seconds: float, outage: list[float]) -> None:
    """Stop the gateway's PostgreSQL backends for `seconds` from `at` (epoch seconds)."""
    time.sleep(max(0.0, at - time.time()))
    with paused_backends(name) as pids:
        outage.append(time.time())
        print(f"database: {len(pids)} gateway backends stopped for {seconds:g} s")
        time.sleep(seconds)
    outage.append(time.time())


def _restart_database(server: PrivatePostgres, at: float, outage: list[float]) -> None:
    """Restart the gateway's PostgreSQL server at `at` (epoch seconds)."""
    time.sleep(max(0.0, at - time.time()))
    outage.append(time.time())
    server.restart()
    outage.append(time.time())
    print(f"database: server restarted in {outage[1] - outage[0]:.2f} s")


def _all_faults(argv: list[str]) -> int:
    """This benchmark once per fault, each in a process of its own; the exit status is the
    worst of them."""
    rest = [a for a in argv if a != "--faults"]
    worst = 0
    for fault in _FAULTS:
        print(f"\n=== fault: {fault} ===", flush=True)
        done = subprocess.run([sys.executable, __file__, *rest, "--fault", fault])
        worst = max(worst, done.returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())

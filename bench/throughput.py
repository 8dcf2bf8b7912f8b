"""End-to-end throughput: frames/s from Mosquitto through the gateway into VictoriaMetrics,
against the strongest baselines draining the same queue in the same run.

Every session is subscribed first, then N QoS 1 frames are published (several processes),
so the broker holds N queued frames for each. The baselines (bench/baselines.py, each in a
process of its own) drain their queues: (1) the fastest bare libmosquitto consumer (counts,
`loop_forever`, Receive Maximum 65535), (2) a minimal bridge (libmosquitto, `json.loads`,
one line of line protocol, a POST per 5000 lines to the same VictoriaMetrics), (3) bare
paho. Then the gateway drains its queue: decode, dedup, rules, black box, journal, write to
the store, acknowledge after durability. Then the baselines drain a second queue each. The
gateway is reported against the mean of each baseline's runs before and after it: the ratio
cancels most of this machine's noise, and its drift over the run.

The gateway and the bridge are timed from their first message to the moment the store's own
row counter (`vm_rows_inserted_total`) holds every frame's rows; the bare consumers from their
first message to their last. VictoriaMetrics shares the two cores: its CPU seconds per 100k
frames (from /proc) are reported for the gateway and the bridge, beside the consumers' own
and the broker's; each run starts once the broker and the store are idle (the store merges
in the background, for seconds after a write).

The store is warm by default: before the runs, one point per elevator is written straight
to VictoriaMetrics, so the fleet's series exist, as they do in service (a city's lifts
report all day; a series is registered once, then only gets samples). Registering a new
series costs the store an order of magnitude more than a sample, and on two shared cores
that cost lands on the figure of whoever writes first. `--cold-store` skips the warm-up.

    python bench/throughput.py --frames 200000 --elevators 20000
    python bench/throughput.py --clients libmosquitto,paho
    python bench/throughput.py --cold-store

`--profile NAME` also queues the same frames in a device profile's format (e.g.
lift-numeric, written by the simulator's encoder) for a gateway session of their own, drains
them between two native runs, and reports their rate and the gateway's CPU per frame against
the native runs' mean.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baselines
from gateway import logs
from gateway.app import Gateway
from gateway.frames import Frame, decode
from gateway.ingest import SUBSCRIPTIONS
from gateway.profiles import load_profiles
from gateway.profiles.spec import subscription
from gateway.settings import load_settings
from gateway.tsdb import InfluxSink, to_point
from simulators.device import Emitted
from simulators.profiled import ProfileSpeaker
from tests.services import Broker, VictoriaMetrics, free_port, make_broker, make_vm


def _frame(eid: str, seq: int, ts: str) -> bytes:
    """A car at work: moving on every other frame, stopped at a landing with its door open
    on the others."""
    moving = seq % 2 == 0
    return json.dumps(
        {
            "v": 1,
            "elevator_id": eid,
            "seq": seq,
            "boot": 1,
            "ts": ts,
            "floor": seq % 20,
            "moving": moving,
            "direction": "up",
            "speed_mps": 1.0 if moving else 0.0,
            "door": "closed" if moving else "open",  # a stop is at a landing, door open
            "door_zone": not moving,
            "occupied": True,
            "load_pct": 30.0,
            "mode": "normal",
            "alarm_button": False,
            "power": "mains",
            "safety_circuit": "closed",
        }
    ).encode()


def _publish_share(
    port: int, worker: int, workers: int, frames: int, elevators: int, profile: str | None
) -> None:
    speakers: dict[str, ProfileSpeaker] = {}
    if profile is not None:
        [spec] = [p for p in load_profiles() if p.name == profile]
    client_id = f"bench-load-{profile or 'native'}-{worker}"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ts = datetime.now(UTC).isoformat()
    last = None
    for n in range(worker, frames, workers):
        eid = f"B{n % elevators:06d}"
        topic, payload = f"elevators/{eid}/status", _frame(eid, n // elevators, ts)
        if profile is not None:
            speaker = speakers.setdefault(eid, ProfileSpeaker(spec, eid))
            [message] = speaker.messages([Emitted("status", eid, json.loads(payload))])
            topic, payload = message.topic, message.payload
        last = client.publish(topic, payload, qos=1)
        while len(client._out_messages) > 5000:  # keep memory bounded while the broker catches up
            time.sleep(0.02)  # coarse: this loop must not take the GIL from the gateway
    if last is not None:
        last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def queue_frames(
    port: int, frames: int, elevators: int, publishers: int, profile: str | None = None
) -> None:
    """Publish `frames` status frames of `elevators` cars from `publishers` processes (in a
    device profile's format, if given)."""
    procs = [
        multiprocessing.Process(
            target=_publish_share, args=(port, w, publishers, frames, elevators, profile)
        )
        for w in range(publishers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def _create_session(port: int, client_id: str, topics: tuple[str, ...] = SUBSCRIPTIONS) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    done = threading.Event()
    client.on_subscribe = lambda *_a: done.set()
    client.loop_start()
    client.subscribe([(t, 1) for t in topics])
    done.wait(10)
    client.disconnect()
    client.loop_stop()


_ROWS = re.compile(rb"^vm_rows_inserted_total\{[^}]*\} (\d+)", re.MULTILINE)
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """A process's CPU seconds so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


class Store:
    """The VictoriaMetrics under test, seen from outside: its row counter and its CPU."""

    def __init__(self, vm: VictoriaMetrics) -> None:
        assert vm.proc is not None
        self.pid, self.port = vm.proc.pid, vm.port
        # From the store's answer to a write to its counting it (it counts in a periodic
        # flush, about once a second): the gateway's and the bridge's times both carry one.
        self.count_lags_s: list[float] = []
        self._conn = http.client.HTTPConnection("127.0.0.1", vm.port, timeout=10)

    def rows(self) -> int:
        self._conn.request("GET", "/metrics")
        return sum(map(int, _ROWS.findall(self._conn.getresponse().read())))

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def wait_rows(self, target: int, timeout_s: float = 900) -> float:
        """The monotonic time the row counter was first seen at `target` or more. Polled
        less often while far off (the page costs the store CPU), every 5 ms near the end."""
        deadline = time.perf_counter() + timeout_s
        last, last_at = self.rows(), time.perf_counter()
        while last < target:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the store has {last} rows of {target}")
            rows, now = self.rows(), time.perf_counter()
            rate = (rows - last) / (now - last_at) if rows > last else 0
            if rows >= target:
                return now
            time.sleep(0.1 if rate <= 0 else min(0.1, max(0.005, (target - rows) / rate / 4)))
            last, last_at = rows, now
        return last_at

    def rows_of(self, lines: list[str]) -> int:
        """Rows these lines make in the store (string fields make none): written, counted."""
        before = self.rows()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", "/api/v2/write?precision=ns", "\n".join(lines).encode())
        assert conn.getresponse().status == 204
        answered = time.perf_counter()
        # The store answers before it counts (it inserts asynchronously): until it settles.
        rows, settled_at = before, answered + 0.3
        while rows == before or time.perf_counter() < settled_at:
            time.sleep(0.005)
            if (now := self.rows()) != rows:
                if rows == before:
                    self.count_lags_s.append(time.perf_counter() - answered)
                rows, settled_at = now, time.perf_counter() + 0.3
        return rows - before


def warm_store(vm_url: str, elevators: int, store: Store | None = None) -> None:
    """One status point per elevator, written straight to the store, the way the gateway
    would write it (and, given the `store`, the way the bridge would: its own series too):
    the fleet's series exist before the measured runs."""
    settings = load_settings(tsdb_url=vm_url)
    sink = InfluxSink(
        vm_url, settings.tsdb_token, settings.tsdb_org, settings.tsdb_bucket, timeout_s=60
    )
    now = datetime.now(UTC)
    points, lines = [], []
    for n in range(elevators):
        eid = f"B{n:06d}"
        payload = _frame(eid, 0, now.isoformat())
        frame = decode(f"elevators/{eid}/status", payload, now)
        assert isinstance(frame, Frame), frame
        points.append(to_point(frame))
        lines.append(baselines.line_of(payload))
    for start in range(0, len(points), 5000):
        sink.write(points[start : start + 5000])
        if store is not None:
            store.rows_of(lines[start : start + 5000])
    sink.close()


def rows_per_frame(store: Store) -> tuple[int, int]:
    """The store's rows for one frame: the gateway's line, the bridge's (each written once)."""
    now = datetime.now(UTC)
    payload = _frame("CAL", 0, now.isoformat())
    frame = decode("elevators/CAL/status", payload, now)
    assert isinstance(frame, Frame), frame
    return store.rows_of([to_point(frame).line]), store.rows_of([baselines.line_of(payload)])


def quiet(pids: list[int], timeout_s: float = 30.0) -> None:
    """Wait until these processes (broker, store) idle: the store merges what it was sent
    in the background for seconds after, and that CPU belongs to the run before."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        before = sum(map(cpu_s, pids))
        time.sleep(0.5)
        if sum(map(cpu_s, pids)) - before <= 0.02:  # 4% of a core
            return


@dataclass
class Run:
    rate: float  # frames/s
    consumer_cpu_us: float  # the consumer's processes, CPU µs per frame
    broker_cpu_s: float  # Mosquitto, CPU s per 100k frames
    store_cpu_s: float | None = None  # VictoriaMetrics, CPU s per 100k frames
    receiver_cpu_us: float | None = None  # of consumer_cpu_us, the gateway's receiver's


def _per_100k(seconds: float, frames: int) -> float:
    return seconds * 1e5 / frames


def _spawn(target: object, *args: object) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _marks() -> Any:
    return multiprocessing.get_context("spawn").Array("d", 4, lock=False)


def _drain_bare(drain: object, port: int, client_id: str, frames: int, broker_pid: int) -> Run:
    marks = _marks()
    broker_cpu = cpu_s(broker_pid)
    proc = _spawn(drain, port, client_id, frames, marks)
    proc.join(900)
    return Run(
        frames / (marks[baselines.LAST] - marks[baselines.FIRST]),
        (marks[baselines.LAST_CPU] - marks[baselines.FIRST_CPU]) * 1e6 / frames,
        _per_100k(cpu_s(broker_pid) - broker_cpu, frames),
    )


def _drain_bridge(
    port: int, client_id: str, frames: int, broker_pid: int, store: Store, rows: int
) -> Run:
    marks = _marks()
    base, vm_cpu, broker_cpu = store.rows(), store.cpu_s(), cpu_s(broker_pid)
    proc = _spawn(baselines.bridge, port, client_id, frames, store.port, marks)
    end = store.wait_rows(base + frames * rows)
    vm_used, broker_used = store.cpu_s() - vm_cpu, cpu_s(broker_pid) - broker_cpu
    proc.join(900)
    return Run(
        frames / (end - marks[baselines.FIRST]),
        (marks[baselines.LAST_CPU] - marks[baselines.FIRST_CPU]) * 1e6 / frames,
        _per_100k(broker_used, frames),
        _per_100k(vm_used, frames),
    )


BASELINES = ("bare libmosquitto", "minimal bridge", "bare paho")
_WHEN = ("before", "after")  # each baseline drains once before the gateways, once after


def _session_of(name: str, when: str) -> str:
    return f"bench-{name.replace(' ', '-')}-{when}"


def drain_baseline(
    name: str, when: str, port: int, frames: int, broker_pid: int, store: Store, rows: int
) -> Run:
    client_id = _session_of(name, when)
    if name == "minimal bridge":
        return _drain_bridge(port, client_id, frames, broker_pid, store, rows)
    drain = baselines.bare_libmosquitto if name == "bare libmosquitto" else baselines.bare_paho
    return _drain_bare(drain, port, client_id, frames, broker_pid)


def _gateway(
    work: Path,
    broker: Broker,
    vm_url: str,
    store: Store,
    rows: int,
    client: str,
    frames: int,
    label: str = "",
) -> Run:
    """The gateway on `client` draining the queue of session `label`: frames/s from the first
    frame taken in to the store's row counter holding every frame; CPU per frame of the
    gateway's processes (pipeline and writer here, libmosquitto's receiver apart)."""
    assert broker.proc is not None
    name = "-".join(filter(None, (client, label)))
    settings = load_settings(
        mqtt_url=broker.url,
        mqtt_client=client,
        mqtt_client_id=f"bench-gateway-{name}",
        tsdb_url=vm_url,
        store_url=f"sqlite:///{work / f'gw-{name}.db'}",
        spool_dir=work / f"spool-{name}",
        http_port=free_port(),
        log_level="warning",
    )
    base = store.rows()
    with Gateway(settings) as gw:
        receiver = getattr(gw.session, "_process", None)  # libmosquitto's receiver process
        deadline = time.perf_counter() + 600
        while not (gw.pipeline.pending or gw.session.backlog):
            if time.perf_counter() > deadline:
                raise TimeoutError("the gateway took no frame in")
            time.sleep(0.005)
        start, cpu = time.perf_counter(), time.process_time()
        vm_cpu, broker_cpu = store.cpu_s(), cpu_s(broker.proc.pid)
        receiver_cpu = cpu_s(receiver.pid) if receiver else 0.0
        end = store.wait_rows(base + frames * rows)
        vm_used, broker_used = store.cpu_s() - vm_cpu, cpu_s(broker.proc.pid) - broker_cpu
        used = time.process_time() - cpu
        receiver_used = cpu_s(receiver.pid) - receiver_cpu if receiver else 0.0
        sink = gw.writer._sink
    run = Run(
        frames / (end - start),
        (used + receiver_used) * 1e6 / frames,
        _per_100k(broker_used, frames),
        _per_100k(vm_used, frames),
        receiver_used * 1e6 / frames,
    )
    requests = getattr(sink, "requests", 0)
    print(
        f"gateway on {client}{f' ({label})' if label else ''}: {run.rate:,.0f} frames/s, "
        f"{run.consumer_cpu_us:.1f} µs CPU per frame ({run.receiver_cpu_us:.1f} of it the "
        "receiver's)" + (f", {frames / requests:,.0f} points/request" if requests else "")
    )
    return run


def _row(name: str, rate: str, runs: list[Run]) -> str:
    def mean(values: list[float | None]) -> str:
        if None in values:
            return ""
        return f"{sum(values) / len(values):.2f}"  # type: ignore[arg-type]

    return (
        f"{name:26}{rate:>30}{mean([r.consumer_cpu_us for r in runs]):>14}"
        f"{mean([r.broker_cpu_s for r in runs]):>15}{mean([r.store_cpu_s for r in runs]):>11}"
    )


def _table(runs: dict[str, list[Run]], gateways: dict[str, Run], lags_s: list[float]) -> None:
    """Each baseline's mean (before, after), the gateway, its ratios, and CPU: the consumer's
    own µs per frame, Mosquitto's and VictoriaMetrics' CPU seconds per 100k frames."""
    print(f"\n{'':26}{'frames/s (before, after)':>30}{'CPU µs/frame':>14}"
          f"{'broker s/100k':>15}{'VM s/100k':>11}")  # fmt: skip
    means = {}
    for name, (before, after) in runs.items():
        means[name] = (before.rate + after.rate) / 2
        rate = f"{means[name]:,.0f} ({before.rate:,.0f}, {after.rate:,.0f})"
        print(_row(name, rate, [before, after]))
    for client, run in gateways.items():
        print(_row(f"gateway on {client}", f"{run.rate:,.0f}", [run]))
        for name, mean in means.items():
            print(f"  ratio gateway on {client} / {name}: {run.rate / mean:.2f}")
    print(
        f"(the store counted the writes before the runs {min(lags_s):.2f}-{max(lags_s):.2f} s "
        "after answering them: the gateway's and the bridge's times include one such lag, the "
        "bare consumers' none)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--elevators", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--clients", default="libmosquitto", help="ingest clients to run the gateway on"
    )
    parser.add_argument(
        "--cold-store",
        action="store_true",
        help="skip the warm-up: every series is new to the store during the measured run",
    )
    parser.add_argument("--profile", help="also the same frames in this device profile")
    args = parser.parse_args()
    clients = args.clients.split(",")

    logs.configure("warning")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    broker, vm = make_broker(work / "broker"), make_vm(work / "vm")
    broker.start()
    vm.start()
    try:
        store = Store(vm)
        assert broker.proc is not None
        broker_pid = broker.proc.pid
        sessions = [_session_of(b, when) for b in BASELINES for when in _WHEN]
        sessions += [f"bench-gateway-{c}" for c in clients]
        sessions += [f"bench-gateway-{c}-native-again" for c in clients if args.profile]
        for cid in sessions:
            _create_session(broker.port, cid)
        if args.profile:
            [spec] = [p for p in load_profiles() if p.name == args.profile]
            for c in clients:
                _create_session(broker.port, f"bench-gateway-{c}-{spec.name}", subscription(spec))
            queue_frames(broker.port, args.frames, args.elevators, args.publishers, spec.name)
        t0 = time.perf_counter()
        queue_frames(broker.port, args.frames, args.elevators, args.publishers)
        took = time.perf_counter() - t0
        print(f"queued {args.frames} frames for {len(sessions)} sessions in {took:.1f} s")
        if not args.cold_store:
            warm_store(vm.url, args.elevators, store)
            print(f"store warmed: one point for each of {args.elevators} elevators")
        rows = rows_per_frame(store)
        gw_rows, bridge_rows = rows
        print(f"store rows per frame: gateway {gw_rows}, bridge {bridge_rows}")

        runs: dict[str, list[Run]] = {name: [] for name in BASELINES}

        def drain_baselines(when: str) -> None:
            for name in BASELINES:
                quiet([broker_pid, store.pid])
                run = drain_baseline(
                    name, when, broker.port, args.frames, broker_pid, store, bridge_rows
                )
                runs[name].append(run)
                print(f"{name} ({when}): {run.rate:,.0f} frames/s, "
                      f"{run.consumer_cpu_us:.1f} µs CPU per frame")  # fmt: skip

        def gateway(client: str, label: str = "") -> Run:
            quiet([broker_pid, store.pid])
            return _gateway(work, broker, vm.url, store, gw_rows, client, args.frames, label)

        drain_baselines("before")
        gateways = {c: gateway(c) for c in clients}
        for c in clients if args.profile else ():
            profiled, again = gateway(c, args.profile), gateway(c, "native-again")
            rate = (gateways[c].rate + again.rate) / 2
            cpu = (gateways[c].consumer_cpu_us + again.consumer_cpu_us) / 2
            print(
                f"ratio {args.profile} / native frames (mean of the runs before and after), "
                f"gateway on {c}: rate {profiled.rate / rate:.2f}, "
                f"CPU per frame {profiled.consumer_cpu_us / cpu:.2f}"
            )
        drain_baselines("after")
        _table(runs, gateways, store.count_lags_s)
    finally:
        broker.stop()
        vm.stop()


if __name__ == "__main__":
    main()

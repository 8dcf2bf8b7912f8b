"""End-to-end throughput: frames/s from Mosquitto through the gateway into VictoriaMetrics,
against bare subscribers draining the same queue in the same run.

Every session is subscribed first, then N QoS 1 frames are published (several processes),
so the broker holds N queued frames for each. The baselines drain their queues counting and
acknowledging: a bare paho-mqtt subscriber and a bare libmosquitto one (pymosquitto). Then
the gateway drains its queue, once per ingest client asked for: decode, dedup, rules, black
box, batch, write to the store (acknowledged by VictoriaMetrics), acknowledge. Then the
baselines drain a second queue each. Each gateway is reported against the mean of the two
runs of the bare subscriber on its own client library, before and after it: the ratio
cancels most of this machine's noise, and its drift over the run.

The store is warm by default: before the gateway runs, one point per elevator is written
straight to VictoriaMetrics, so the fleet's series exist, as they do in service (a city's
lifts report all day; a series is registered once, then only gets samples). Registering a
new series costs the store an order of magnitude more than a sample, and on two shared
cores that cost lands on the gateway's figure. `--cold-store` skips the warm-up.

    python bench/throughput.py --frames 100000 --elevators 10000
    python bench/throughput.py --clients libmosquitto,paho
    python bench/throughput.py --cold-store

`--profile NAME` also queues the same frames in a device profile's format (e.g.
lift-numeric, written by the simulator's encoder) for a gateway session of their own, drains
them between two native runs, and reports their rate and the gateway's CPU per frame against
the native runs' mean.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import logs, metrics
from gateway.app import Gateway
from gateway.frames import Frame, decode
from gateway.ingest import SUBSCRIPTIONS
from gateway.profiles import load_profiles
from gateway.profiles.spec import subscription
from gateway.settings import load_settings
from gateway.tsdb import InfluxSink, to_point
from simulators.device import Emitted
from simulators.profiled import ProfileSpeaker
from tests.services import free_port, make_broker, make_vm


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


def _session(port: int, client_id: str, manual_ack: bool) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 2000
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    return client


def _create_session(port: int, client_id: str, topics: tuple[str, ...] = SUBSCRIPTIONS) -> None:
    client = _session(port, client_id, manual_ack=False)
    done = threading.Event()
    client.on_subscribe = lambda *_a: done.set()
    client.loop_start()
    client.subscribe([(t, 1) for t in topics])
    done.wait(10)
    client.disconnect()
    client.loop_stop()


class _Count:
    """A subscriber's message callback that counts to `frames`, timing from the first."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.count = 0
        self.start = 0.0
        self.done = threading.Event()

    def __call__(self, *_args: object) -> None:
        if self.count == 0:
            self.start = time.perf_counter()
        self.count += 1
        if self.count == self.frames:
            self.done.set()

    def rate(self) -> float:
        self.done.wait(600)
        return self.frames / (time.perf_counter() - self.start)


def _baseline_libmosquitto(port: int, client_id: str, frames: int) -> float:
    """A bare libmosquitto subscriber (its own network thread): count, and it acknowledges."""
    from pymosquitto.client import Mosquitto

    client = Mosquitto(client_id=client_id, clean_start=False, protocol=5)
    client.on_message = count = _Count(frames)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rate = count.rate()
    client.disconnect()
    client.loop_stop(False)
    return rate


def _baseline_paho(port: int, client_id: str, frames: int) -> float:
    """A bare paho subscriber: count and acknowledge (after the callback, manual_ack off)."""
    client = _session(port, client_id, manual_ack=False)
    client.on_message = count = _Count(frames)
    client.loop_start()
    rate = count.rate()
    client.disconnect()
    client.loop_stop()
    return rate


def warm_store(vm_url: str, elevators: int) -> None:
    """One status point per elevator, written straight to the store, the way the gateway
    would write it: the fleet's series exist before the measured run."""
    settings = load_settings(tsdb_url=vm_url)
    sink = InfluxSink(
        vm_url, settings.tsdb_token, settings.tsdb_org, settings.tsdb_bucket, timeout_s=60
    )
    now = datetime.now(UTC)
    points = []
    for n in range(elevators):
        eid = f"B{n:06d}"
        frame = decode(f"elevators/{eid}/status", _frame(eid, 0, now.isoformat()), now)
        assert isinstance(frame, Frame), frame
        points.append(to_point(frame))
    for start in range(0, len(points), 5000):
        sink.write(points[start : start + 5000])
    sink.close()


BASELINES = {"paho": _baseline_paho, "libmosquitto": _baseline_libmosquitto}
_WHEN = ("before", "after")  # each baseline drains once before the gateways, once after


def _gateway(
    work: Path, broker_url: str, vm_url: str, client: str, frames: int, label: str = ""
) -> tuple[float, float]:
    """The gateway on `client` draining the queue of session `label`: frames/s from the first
    frame processed to the last point acknowledged by VictoriaMetrics, and this process's CPU
    µs per frame meanwhile (pipeline, writer; libmosquitto's receiver is a process apart)."""
    name = "-".join(filter(None, (client, label)))
    settings = load_settings(
        mqtt_url=broker_url,
        mqtt_client=client,
        mqtt_client_id=f"bench-gateway-{name}",
        tsdb_url=vm_url,
        store_url=f"sqlite:///{work / f'gw-{name}.db'}",
        spool_dir=work / f"spool-{name}",
        http_port=free_port(),
        log_level="warning",
    )
    written = metrics.TSDB_POINTS._value
    before = written.get()
    with Gateway(settings) as gw:
        start, cpu = None, time.process_time()
        deadline = time.perf_counter() + 600
        while written.get() - before < frames and time.perf_counter() < deadline:
            if start is None and gw.pipeline.pending:
                start, cpu = time.perf_counter(), time.process_time()
            time.sleep(0.02)  # coarse: this loop must not take the GIL from the gateway
        elapsed = time.perf_counter() - (start or deadline)
        stored = written.get() - before
        cpu_us = (time.process_time() - cpu) * 1e6 / max(1, stored)
        sink = gw.writer._sink
    rate = stored / elapsed
    print(
        f"gateway on {client}{f' ({label})' if label else ''} "
        "(decode, dedup, rules, write to VictoriaMetrics, ack): "
        f"{rate:,.0f} frames/s ({stored:,.0f} points), {cpu_us:.0f} µs CPU per frame"
    )
    requests = getattr(sink, "requests", 0)
    if requests:
        print(
            f"  write efficiency: {stored / requests:,.0f} points/request, "
            f"{sink.bytes_sent / stored:.0f} bytes/point"
        )
    return rate, cpu_us


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
        sessions = [f"bench-baseline-{b}-{when}" for b in BASELINES for when in _WHEN]
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
            warm_store(vm.url, args.elevators)
            print(f"store warmed: one point for each of {args.elevators} elevators")

        runs: dict[str, list[float]] = {name: [] for name in BASELINES}

        def drain_baselines(when: str) -> None:
            for name, drain in BASELINES.items():
                rate = drain(broker.port, f"bench-baseline-{name}-{when}", args.frames)
                runs[name].append(rate)
                print(f"baseline {when}: bare {name} subscriber, count only: {rate:,.0f} frames/s")

        drain_baselines("before")
        runs_gw = {c: _gateway(work, broker.url, vm.url, c, args.frames) for c in clients}
        rates = {c: rate for c, (rate, _cpu) in runs_gw.items()}
        for c in clients if args.profile else ():
            rate, cpu = _gateway(work, broker.url, vm.url, c, args.frames, args.profile)
            again = _gateway(work, broker.url, vm.url, c, args.frames, "native-again")
            native = [(a + b) / 2 for a, b in zip(runs_gw[c], again, strict=True)]
            print(
                f"ratio {args.profile} / native frames (mean of the runs before and after), "
                f"gateway on {c}: rate {rate / native[0]:.2f}, CPU per frame {cpu / native[1]:.2f}"
            )
        drain_baselines("after")
        for client, rate in rates.items():
            for name, (before, after) in runs.items():
                mean = (before + after) / 2
                print(
                    f"ratio gateway on {client} / bare {name} (mean {mean:,.0f} frames/s): "
                    f"{rate / mean:.2f}"
                )
    finally:
        broker.stop()
        vm.stop()


if __name__ == "__main__":
    main()

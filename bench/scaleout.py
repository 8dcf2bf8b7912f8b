"""Scale-out throughput: one gateway process against two, in the same run, on one Mosquitto,
one PostgreSQL (the shared store) and one VictoriaMetrics.

For each layout the gateways start and connect, then publishers send N QoS 1 frames faster
than the gateways take them (the broker queues the rest): the rate is N over the time from
the first frame processed to the last (summed over the processes' /metrics). The CPU seconds
the gateway processes used meanwhile give frames per core.

Layouts:
  one        a single gateway
  partition  two gateways in a cluster group (each receives every frame, processes its half)
  share      two gateways on `$share/bench/` (Mosquitto round-robin: each receives half);
             per-elevator state is split, so this is the upper bound a hash-by-topic broker
             (EMQX) would give, not a correct layout on Mosquitto

    python bench/scaleout.py --frames 60000 --elevators 6000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from throughput import _publish_share  # noqa: E402 - the load generator of bench/throughput

from tests.gateways import healthy, start_gateway  # noqa: E402
from tests.services import free_port, make_broker, make_pg_database, make_vm  # noqa: E402

_ACCEPTED = re.compile(r'^gateway_frames_accepted_total\{kind="status"\} (\S+)$', re.MULTILINE)
_TICK = os.sysconf("SC_CLK_TCK")


def _accepted(env: dict[str, str]) -> float:
    """Status frames the gateway has processed (decoded, new, passed on to its consumers)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    m = _ACCEPTED.search(text)
    return float(m.group(1)) if m else 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _start_all(envs: list[dict[str, str]], work: Path) -> list[subprocess.Popen[bytes]]:
    procs = [start_gateway(env, work / f"{env['GATEWAY_MQTT_CLIENT_ID']}.log") for env in envs]
    for env in envs:
        deadline = time.monotonic() + 60
        while not healthy(env) and time.monotonic() < deadline:
            time.sleep(0.1)
    return procs


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_layout(
    name: str, processes: int, extra: dict[str, str], base: dict[str, str], args: argparse.Namespace
) -> tuple[float, float]:
    """Frames/s through `processes` gateways, and frames per gateway CPU second."""
    work = Path(base["BENCH_WORK"]) / name
    work.mkdir()
    envs = [
        base
        | extra
        | {
            "GATEWAY_MQTT_CLIENT_ID": f"bench-{name}-{n}-{uuid.uuid4().hex[:4]}",
            "GATEWAY_HTTP_PORT": str(free_port()),
            "GATEWAY_SPOOL_DIR": str(work / f"spool{n}"),
        }
        for n in range(processes)
    ]
    procs = _start_all(envs, work)
    time.sleep(1.5)  # a cluster group's members learn of each other (3 s lease, renewed at 1 s)
    try:
        cpu0 = [_cpu_s(p.pid) for p in procs]
        port = int(base["GATEWAY_MQTT_URL"].rsplit(":", 1)[1])
        loaders = [
            multiprocessing.Process(
                target=_publish_share, args=(port, w, args.publishers, args.frames, args.elevators)
            )
            for w in range(args.publishers)
        ]
        for p in loaders:
            p.start()
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(_accepted(env) for env in envs)
            now = time.perf_counter()
            if done and first is None:
                first = now
            if done >= args.frames:
                last = now
                break
            time.sleep(0.25)  # polling /metrics costs the gateways CPU too
        cpu = sum(_cpu_s(p.pid) - c for p, c in zip(procs, cpu0, strict=True))
        for p in loaders:
            p.join()
    finally:
        _stop_all(procs)
    if first is None or last is None:
        raise RuntimeError(f"{name}: the gateways did not take {args.frames} frames in time")
    rate = args.frames / (last - first)
    print(
        f"{name:10s} {processes} process(es): {rate:8,.0f} frames/s, "
        f"{args.frames / cpu:8,.0f} frames per gateway CPU second"
    )
    return rate, args.frames / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60_000)
    parser.add_argument("--elevators", type=int, default=6_000)
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    broker, vm, db = make_broker(work / "broker"), make_vm(work / "vm"), make_pg_database()
    broker.start()
    vm.start()
    base = dict(os.environ) | {
        "PYTHONPATH": str(ROOT),
        "BENCH_WORK": str(work),
        "GATEWAY_MQTT_URL": broker.url,
        "GATEWAY_TSDB_URL": vm.url,
        "GATEWAY_STORE_URL": db.url,
        "GATEWAY_LOG_LEVEL": "warning",
        # deploy/gateway.example.toml's window: the default (2000) would cap a gateway at
        # about 2000 frames per flush interval, whatever its CPU.
        "GATEWAY_MQTT_RECEIVE_WINDOW": "10000",
    }
    try:
        print(f"{args.frames} frames of {args.elevators} elevators; {os.cpu_count()} cores")
        one, one_cpu = run_layout("one", 1, {}, base, args)
        two, two_cpu = run_layout(
            "partition",
            2,
            {"GATEWAY_CLUSTER_GROUP": "bench", "GATEWAY_CLUSTER_LEASE_S": "3"},
            base,
            args,
        )
        share, _ = run_layout(
            "share", 2, {"GATEWAY_MQTT_TOPIC_PREFIX": "$share/bench/"}, base, args
        )
        print(f"scaling factor, two partitioned processes / one: {two / one:.2f}")
        print(f"scaling factor, two on a round-robin $share / one: {share / one:.2f}")
        print(
            f"CPU cost of partitioning (frames per CPU second, two / one): {two_cpu / one_cpu:.2f}"
        )
    finally:
        broker.stop()
        vm.stop()
        db.drop()


if __name__ == "__main__":
    main()

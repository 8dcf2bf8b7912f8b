"""Service processes the tests and benchmarks own: Mosquitto and VictoriaMetrics on free ports.

Each is started in a directory of its own, never one that happens to be running, and can be
killed and restarted on the same port and data.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open: {log.read_text()[-2000:]}")


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed: run .ci/run (it installs it)")
    return path


@dataclass
class ServiceProcess:
    """A service we own: restartable on the same port and data directory."""

    argv: list[str]
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "service.log"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        _wait_port(self.port, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Broker(ServiceProcess):
    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass
class VictoriaMetrics(ServiceProcess):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching `match` (a PromQL series selector)."""
        # Make what was just written searchable now rather than after VM's buffering delay.
        httpx.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=10)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def count(self, metric: str, elevator_prefix: str) -> int:
        series = self.export(f'{{__name__="{metric}",elevator_id=~"{elevator_prefix}.*"}}')
        return sum(len(s["values"]) for s in series)


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
# Mosquitto's defaults drop data for a fleet: 100 queued messages per offline client.
max_queued_messages 1000000
max_queued_bytes 0
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


def make_broker(tmp: Path) -> Broker:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, dir=tmp))
    return Broker([_binary("mosquitto"), "-c", str(conf)], port, tmp)


def make_vm(tmp: Path) -> VictoriaMetrics:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [
        _binary("victoria-metrics"),
        f"-storageDataPath={tmp / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
        "-search.disableCache",
    ]
    return VictoriaMetrics(argv, port, tmp)

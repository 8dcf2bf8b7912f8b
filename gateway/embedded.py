"""A Mosquitto broker of our own, for the demo and for tests: a generated configuration in a
directory of its own, on a free loopback port.

Mosquitto's defaults lose data for a fleet (100 queued messages per offline client, a save
every 30 minutes); this configuration keeps every queued message and saves every second.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

_CONFIG = """\
listener {port} 127.0.0.1
# Run as whoever started us: run as root, Mosquitto would drop to its own user and then be
# unable to write its log and persistence into our directory.
user {user}
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
max_queued_messages 1000000
max_queued_bytes 0
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if path is None:
        raise BrokerError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    return path


def mosquitto_config(port: int, directory: Path) -> str:
    return _CONFIG.format(port=port, dir=directory, user=getpass.getuser())


class EmbeddedBroker:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, self.directory))
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
            # Its own process group: Ctrl-C must not take the broker down before the gateway
            # has flushed and acknowledged what it holds.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited: see {self.directory / 'mosquitto.log'}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise BrokerError(f"mosquitto did not open port {self.port}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

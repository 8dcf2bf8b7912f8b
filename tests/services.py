"""Service processes the tests and benchmarks own: Mosquitto and VictoriaMetrics on free ports.

Each is started in a directory of its own, never one that happens to be running, and can be
killed and restarted on the same port and data.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from gateway.embedded import free_port, mosquitto_config


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


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as {'name{labels}': value}; empty while nothing answers."""
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return {}
    lines = (line for line in text.splitlines() if line and not line.startswith("#"))
    samples = (line.rsplit(" ", 1) for line in lines)
    return {name: float(value) for name, value in samples}


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

    def values(self, metric: str, elevator_prefix: str) -> dict[str, list[float]]:
        """Every sample's value per elevator, duplicates included (e.g. `seq`s stored)."""
        series = self.export(f'{{__name__="{metric}",elevator_id=~"{elevator_prefix}.*"}}')
        out: dict[str, list[float]] = {}
        for s in series:
            out.setdefault(s["metric"]["elevator_id"], []).extend(s["values"])
        return out


def make_broker(tmp: Path) -> Broker:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, tmp))
    return Broker([_binary("mosquitto"), "-c", str(conf)], port, tmp)


def make_vm(tmp: Path, *flags: str) -> VictoriaMetrics:
    """A VictoriaMetrics in `tmp`; `flags` are added to its command line."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [
        _binary("victoria-metrics"),
        f"-storageDataPath={tmp / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
        "-search.disableCache",
        *flags,
    ]
    return VictoriaMetrics(argv, port, tmp)


DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"


@dataclass
class SecureBroker(Broker):
    """Mosquitto run with deploy/'s configuration: passwords, the ACL, optionally TLS."""

    tls_port: int | None = None

    def url_as(self, user: str, password: str, *, tls: bool = False) -> str:
        port = self.tls_port if tls else self.port
        scheme = "mqtts" if tls else "mqtt"
        return f"{scheme}://{user}:{password}@127.0.0.1:{port}"


def make_passwd(file: Path, users: list[str]) -> dict[str, str]:
    """New users in a Mosquitto password file, made by deploy/'s script: {user: password}."""
    out = subprocess.run(
        ["sh", str(DEPLOY_DIR / "mosquitto" / "passwd.sh"), str(file), *users],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": f"{Path(_binary('mosquitto_passwd')).parent}:/usr/bin:/bin"},
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def deploy_mosquitto_conf(
    tmp: Path, port: int, tls_port: int | None = None, certs: Path | None = None
) -> str:
    """deploy/mosquitto/mosquitto.conf with only its ports and paths moved into `tmp`; with
    `tls_port`, its commented TLS section enabled with the files in `certs`."""
    text = (DEPLOY_DIR / "mosquitto" / "mosquitto.conf").read_text()
    replace = {
        "listener 1883": f"listener {port} 127.0.0.1",
        "persistence_location ": f"persistence_location {tmp}/",
        "password_file ": f"password_file {tmp / 'passwd'}",
        "acl_file ": f"acl_file {DEPLOY_DIR / 'mosquitto' / 'acl'}",
        "log_dest ": f"log_dest file {tmp / 'mosquitto.log'}",
    }
    if tls_port is not None and certs is not None:
        # Commented-out directives are "#" directly followed by the directive.
        text = re.sub(r"^#(?=[a-z_]+ )", "", text, flags=re.MULTILINE)
        replace |= {
            "listener 8883": f"listener {tls_port} 127.0.0.1",
            "cafile ": f"cafile {certs / 'ca.crt'}",
            "certfile ": f"certfile {certs / 'server.crt'}",
            "keyfile ": f"keyfile {certs / 'server.key'}",
        }
    lines = text.splitlines()
    for start, new in replace.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(start)]
        assert len(hits) == 1, f"deploy mosquitto.conf: expected one {start!r} line, got {hits}"
        lines[hits[0]] = new
    # Started as root, Mosquitto switches to the `mosquitto` user, which cannot write in a
    # test's private temp dir: stay the user running the tests.
    lines.append(f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


def make_secure_broker(
    tmp: Path, users: list[str], certs: Path | None = None
) -> tuple[SecureBroker, dict[str, str]]:
    """A Mosquitto on deploy/'s configuration (TLS too when `certs` holds ca.crt, server.crt
    and server.key), and the passwords of `users`."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tls_port = free_port() if certs is not None else None
    conf = tmp / "mosquitto.conf"
    conf.write_text(deploy_mosquitto_conf(tmp, port, tls_port, certs))
    passwords = make_passwd(tmp / "passwd", users)
    broker = SecureBroker([_binary("mosquitto"), "-c", str(conf)], port, tmp, tls_port=tls_port)
    return broker, passwords


def make_pki(directory: Path, client_cn: str) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate for
    `client_cn`, made with the openssl CLI: ca.crt, server.crt/.key, client.crt/.key."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(args: str) -> None:
        argv = [_binary("openssl"), *args.split()]
        subprocess.run(argv, cwd=directory, check=True, capture_output=True)

    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    openssl(f"req -x509 {new_key} -subj /CN=test-CA -days 2 -keyout ca.key -out ca.crt")
    leaves = {"server": ("127.0.0.1", "subjectAltName=IP:127.0.0.1"), "client": (client_cn, "")}
    for stem, (subject, extensions) in leaves.items():
        (directory / f"{stem}.ext").write_text(extensions + "\n")
        openssl(f"req {new_key} -subj /CN={subject} -keyout {stem}.key -out {stem}.csr")
        openssl(
            f"x509 -req -in {stem}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
            f"-extfile {stem}.ext -out {stem}.crt"
        )
    return directory


# The machine's PostgreSQL (`.ci/run` starts it); tests make databases of their own in it.
PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class PgDatabase:
    """A database created for one test session or benchmark run; `drop()` removes it."""

    name: str

    @property
    def url(self) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _pg_admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        # Never a skip: the PostgreSQL half of the store tests is part of the suite.
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run .ci/run, or set "
            "GATEWAY_TEST_PG_URL to a superuser URL of a running server"
        ) from None


def make_pg_database() -> PgDatabase:
    db = PgDatabase("gw_test_" + uuid.uuid4().hex[:12])
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{db.name}"')
    return db


class PrivatePostgres:
    """A PostgreSQL server of its own (initdb into `tmp`, a free port), for the benchmarks that
    restart the server, which the machine's shared one cannot be. Run as the `postgres` user
    when started as root (the server refuses root), in a directory of its own under /tmp
    that user can reach. `url` is its `postgres` database; `remove()` deletes it all."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self._bin = _pg_bindir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._ctl("start", "-w")

    def restart(self) -> None:
        """A fast shutdown (connections cut, transactions rolled back) and a start."""
        self._ctl("restart", "-w", "-m", "fast")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-w", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        data, log = str(self.dir / "data"), str(self.dir / "log")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, *args)

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self._bin / tool), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=self.dir)


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are not installed: run .ci/run")
    return found[-1].parent


class StallingProxy:
    """A TCP proxy on a free port in front of a local service (a stand-in for a slow or hung
    store): while `hanging`, connections are accepted and never answered; otherwise bytes are
    forwarded, each request from the client held `delay_s` first. `release()` ends the hang:
    held connections are closed (the client sees the failure) and new ones are forwarded."""

    def __init__(self, target_port: int, *, hanging: bool = False, delay_s: float = 0.0) -> None:
        self.hanging = hanging
        self.delay_s = delay_s
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def held(self) -> int:
        return len(self._held)

    def release(self) -> None:
        self.hanging = False
        for conn in self._held:
            conn.close()

    def close(self) -> None:
        self._listener.close()
        self.release()

    def _accept(self) -> None:
        while True:
            try:
                client = self._listener.accept()[0]
            except OSError:
                return
            if self.hanging:
                self._held.append(client)
                continue
            server = socket.create_connection(("127.0.0.1", self._target))
            for src, dst, delay in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: bool) -> None:
        last = 0.0
        try:
            while data := src.recv(65536):
                # A chunk after a pause starts a request: hold it (the rest of it follows).
                if delay and self.delay_s and time.monotonic() - last > 0.1:
                    time.sleep(self.delay_s)
                dst.sendall(data)
                last = time.monotonic()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def paused_backends(database: str) -> Iterator[list[int]]:
    """`database` stops answering for the block, without restarting the machine's server,
    which others use: the server's postmaster is stopped (SIGSTOP) first, so no connection
    opened meanwhile is served (a pool grows when its connections hang), then every backend
    connected to `database`; all go on (SIGCONT) at the end. Yields the backends' pids."""
    with _pg_admin() as admin:
        postmaster = _parent_pid(admin.info.backend_pid)
        os.kill(postmaster, signal.SIGSTOP)
        pids: list[int] = []
        try:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
            for (pid,) in admin.execute(query, (database,)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    pids.append(pid)
            yield pids
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            os.kill(postmaster, signal.SIGCONT)


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, then ppid


@contextlib.contextmanager
def database_away(database: str) -> Iterator[None]:
    """`database` refuses connections and its connections are cut for the block: a failover
    as its clients see it, without restarting the machine's server, which others use."""
    with _pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

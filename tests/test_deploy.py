"""deploy/ checked here without Docker: Mosquitto runs on deploy/'s own configuration (ACL,
password file, TLS), the gateway connects to it over TLS, and the compose file, Grafana
dashboard, systemd unit and example TOML are parsed and checked against the settings."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import signal
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs

from gateway.app import Gateway
from gateway.settings import ConfigError, Settings, load_settings
from tests.conftest import status_frame
from tests.services import (
    DEPLOY_DIR,
    SecureBroker,
    free_port,
    make_passwd,
    make_pki,
    make_secure_broker,
    wait_for,
)

GATEWAY_USER = "elevator-gateway"
USERS = ["E1", "E2", GATEWAY_USER]
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code, in CONNACK and PUBACK


class Client:
    """An MQTT 5 client that records the broker's CONNACK and PUBACK reason codes."""

    def __init__(
        self, port: int, user: str | None, password: str | None, *, certs: Path | None = None
    ) -> None:
        self.connack: int | None = None
        self.pubacks: dict[int, int] = {}
        self.received: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self._connack = threading.Event()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if certs is not None:  # verify the broker, but offer no client certificate
            self.client.tls_set(ca_certs=str(certs / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc.value)
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        self.connack = rc.value  # type: ignore[attr-defined]
        self._connack.set()

    def wait_connack(self) -> int:
        assert self._connack.wait(10), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


Connect = Callable[[str | None, str | None], Client]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"), client_cn=GATEWAY_USER)


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, certs: Path
) -> Iterator[tuple[SecureBroker, dict[str, str]]]:
    """Mosquitto on deploy/mosquitto/mosquitto.conf with its TLS section enabled."""
    broker, passwords = make_secure_broker(tmp_path_factory.mktemp("mosquitto"), USERS, certs)
    broker.start()
    yield broker, passwords
    broker.stop()


@pytest.fixture
def connect(secure: tuple[SecureBroker, dict[str, str]]) -> Iterator[Connect]:
    """connect(user, password) on the plain listener; closed afterwards."""
    clients: list[Client] = []

    def make(user: str | None, password: str | None) -> Client:
        clients.append(Client(secure[0].port, user, password))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


# -- deploy/mosquitto: passwords and the ACL ---------------------------------------------------
def test_device_publishes_only_under_its_own_id(
    secure: tuple[SecureBroker, dict[str, str]], connect: Connect
) -> None:
    passwords = secure[1]
    gateway = connect(GATEWAY_USER, passwords[GATEWAY_USER])
    assert gateway.wait_connack() == 0
    gateway.subscribe("elevators/#")
    e1 = connect("E1", passwords["E1"])
    assert e1.wait_connack() == 0

    assert e1.publish("elevators/E1/status", b"own") == 0
    # Mosquitto 2 answers a denied QoS 1 publish with PUBACK "Not authorized" and drops it
    # (MQTT 3.1.1 clients get a plain PUBACK: the drop is silent there).
    assert e1.publish("elevators/E2/status", b"spoofed") == NOT_AUTHORIZED
    assert e1.publish("dispatch/alerts", b"forged alert") == NOT_AUTHORIZED
    # Messages from one client arrive in order: once a later one is in, the denied ones
    # would have been too.
    assert e1.publish("elevators/E1/event", b"last") == 0
    wait_for(lambda: len(gateway.received) == 2)
    assert gateway.received == [("elevators/E1/status", b"own"), ("elevators/E1/event", b"last")]


@pytest.mark.parametrize(
    ("user", "password"),
    [("E1", "wrong-password"), ("E1", None), ("nobody", "x"), (None, None)],
    ids=["wrong_password", "no_password", "unknown_user", "anonymous"],
)
def test_bad_credentials_are_refused(
    connect: Connect, user: str | None, password: str | None
) -> None:
    client = connect(user, password)
    # Mosquitto 2.0 refuses all of these with "Not authorized" rather than 0x86.
    assert client.wait_connack() == NOT_AUTHORIZED


def test_password_rotation_with_sighup(tmp_path: Path) -> None:
    """OPERATIONS.md's rotation: passwd.sh for the device, then SIGHUP to Mosquitto."""
    broker, old = make_secure_broker(tmp_path, ["E1", "E2"])
    broker.start()
    clients = [Client(broker.port, "E1", old["E1"]), Client(broker.port, "E2", old["E2"])]
    try:
        assert [c.wait_connack() for c in clients] == [0, 0]
        new = make_passwd(tmp_path / "passwd", ["E1"])
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        assert clients[0].disconnected.wait(10), "E1 still connected with its old password"
        clients += [Client(broker.port, "E1", old["E1"]), Client(broker.port, "E1", new["E1"])]
        assert [c.wait_connack() for c in clients[2:]] == [NOT_AUTHORIZED, 0]
        assert not clients[1].disconnected.is_set()
    finally:
        for client in clients:
            client.close()
        broker.stop()


# -- TLS: the gateway on mqtts:// with a client certificate ------------------------------------
def test_gateway_receives_over_tls_with_client_certificate(
    secure: tuple[SecureBroker, dict[str, str]], certs: Path, connect: Connect, tmp_path: Path
) -> None:
    broker, passwords = secure
    settings = load_settings(
        mqtt_url=broker.url_as(GATEWAY_USER, passwords[GATEWAY_USER], tls=True),
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
        mqtt_ca_file=certs / "ca.crt",
        mqtt_cert_file=certs / "client.crt",
        mqtt_key_file=certs / "client.key",
        tsdb_url="",
        store_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        spool_dir=tmp_path / "spool",
        http_port=free_port(),
        flush_interval_s=0.05,
    )
    with capture_logs() as logs, Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        wait_for(lambda: gw.publisher.connected)  # the second connection, for dispatch
        device = connect("E2", passwords["E2"])
        assert device.publish("elevators/E2/status", status_frame("E2", 0)) == 0
        lines = wait_for(lambda: gw.store.telemetry_lines("E2"))
        assert len(lines) == 1
        assert lines[0].startswith("elevator_status,elevator_id=E2")

    started = next(e for e in logs if e["event"] == "gateway_started")
    assert started["mqtt"] == f"mqtts://{GATEWAY_USER}:***@127.0.0.1:{broker.tls_port}"
    assert passwords[GATEWAY_USER] not in repr(logs)


def test_tls_listener_requires_a_client_certificate(
    secure: tuple[SecureBroker, dict[str, str]], certs: Path
) -> None:
    broker, passwords = secure
    assert broker.tls_port is not None
    try:
        client = Client(broker.tls_port, GATEWAY_USER, passwords[GATEWAY_USER], certs=certs)
    except OSError:  # ssl.SSLError included
        return  # refused during the handshake (TLS 1.2)
    try:
        # TLS 1.3 completes the client's side first; the broker then drops the connection.
        assert client.disconnected.wait(10), "connection without a client certificate stayed up"
        assert client.connack is None
    finally:
        client.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mqtt_ca_file": "ca.crt"}, "need an mqtts:// URL"),
        ({"mqtt_url": "mqtts://h", "mqtt_key_file": "client.key"}, "needs mqtt_cert_file"),
        ({"mqtt_url": "mqtts://h", "mqtt_ca_file": "missing.crt"}, "mqtt_ca_file"),
    ],
)
def test_tls_settings_fail_fast(certs: Path, overrides: dict[str, str], message: str) -> None:
    values = {k: certs / v if k.endswith("_file") else v for k, v in overrides.items()}
    with pytest.raises(ConfigError, match=message):
        load_settings(**values)


# -- compose, Grafana, systemd, example TOML: parsed and checked ---------------------------------
# The contract's measurements (§4) and their fields, which the dashboard may query.
MEASUREMENTS = {
    "elevator_status": {
        "floor", "moving", "direction", "speed_mps", "door", "door_code", "door_zone",
        "occupied", "load_pct", "mode", "alarm_button", "power", "safety_circuit", "seq",
        "rx_lag_ms",
    },
    "elevator_event": {"seq", "detail", "rx_lag_ms"},
    "incident": {"state", "arrival_s", "breached"},
}  # fmt: skip


def _yaml(relative: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY_DIR / relative).read_text())


def test_compose_services_volumes_and_gateway_settings() -> None:
    compose = _yaml("compose.yaml")
    services = compose["services"]
    assert set(services) == {"mosquitto", "gateway", "influxdb", "grafana", "postgres"}

    def mounts(service: str) -> dict[str, str]:
        """container path -> source (a named volume or a path relative to deploy/)."""
        pairs = (v.split(":")[:2] for v in services[service]["volumes"])
        return {target: source for source, target in pairs}

    # Everything that must survive a container replacement is on a named volume.
    named = set(compose["volumes"])
    for service, path in [
        ("mosquitto", "/var/lib/mosquitto"),
        ("influxdb", "/var/lib/influxdb2"),
        ("postgres", "/var/lib/postgresql/data"),
        ("grafana", "/var/lib/grafana"),
        ("gateway", "/var/lib/elevator-gateway"),
    ]:
        assert mounts(service)[path] in named, f"{service}: {path} is not on a named volume"
    # Mosquitto runs deploy/'s own files, at the paths its config names.
    conf = (DEPLOY_DIR / "mosquitto" / "mosquitto.conf").read_text()
    mosquitto = mounts("mosquitto")
    assert mosquitto["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    for key, source in [("acl_file", "./mosquitto/acl"), ("password_file", "./mosquitto/passwd")]:
        target = re.search(rf"^{key} (\S+)", conf, re.MULTILINE)
        assert target is not None and mosquitto[target.group(1)] == source
    assert "persistence true" in conf.splitlines()
    assert re.search(r"^persistence_location /var/lib/mosquitto/?$", conf, re.MULTILINE)
    # Bind-mounted files exist (except the secrets an operator makes from the examples).
    made_by_operator = {"./mosquitto/passwd", "./mosquitto/certs"}
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source not in made_by_operator:
                assert (DEPLOY_DIR / source).exists(), source

    gateway = services["gateway"]
    assert (DEPLOY_DIR / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    env = gateway["environment"]
    fields = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"not settings: {sorted(set(env) - fields)}"
    assert env["GATEWAY_STORE_URL"].startswith("postgresql://")
    assert env["GATEWAY_TSDB_URL"] == "http://influxdb:8086"
    influxdb = services["influxdb"]["environment"]
    assert env["GATEWAY_TSDB_ORG"] == influxdb["DOCKER_INFLUXDB_INIT_ORG"]
    assert env["GATEWAY_TSDB_BUCKET"] == influxdb["DOCKER_INFLUXDB_INIT_BUCKET"]
    # Secrets come from deploy/.env, never from the file itself.
    for name in ["GATEWAY_MQTT_URL", "GATEWAY_TSDB_TOKEN", "GATEWAY_STORE_URL", "GATEWAY_TOKENS"]:
        assert "${" in env[name], name
    example_env = (DEPLOY_DIR / ".env.example").read_text()
    for variable in set(re.findall(r"\$\{(\w+)", (DEPLOY_DIR / "compose.yaml").read_text())):
        assert variable == "GATEWAY_CONFIG" or f"\n{variable}=" in example_env, variable


def test_grafana_provisioning_and_dashboard() -> None:
    datasource = _yaml("grafana/provisioning/datasources/influxdb.yaml")["datasources"][0]
    assert datasource["type"] == "influxdb"
    assert datasource["jsonData"]["version"] == "Flux"
    assert datasource["secureJsonData"]["token"] == "$INFLUXDB_TOKEN"
    provider = _yaml("grafana/provisioning/dashboards/elevators.yaml")["providers"][0]
    compose = _yaml("compose.yaml")["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]

    dashboard = json.loads((DEPLOY_DIR / "grafana" / "dashboards" / "elevators.json").read_text())
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    queried: dict[str, set[str]] = {m: set() for m in MEASUREMENTS}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["type"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            query = target["query"]
            assert query.startswith('from(bucket: "${bucket}")'), panel["title"]
            assert "v.timeRangeStart" in query
            measurements = re.findall(r'r\._measurement == "(\w+)"', query)
            assert measurements and set(measurements) <= set(MEASUREMENTS), panel["title"]
            for field in re.findall(r'r\._field == "(\w+)"', query):
                assert any(field in MEASUREMENTS[m] for m in measurements), (panel["title"], field)
                for m in measurements:
                    queried[m].add(field)
    assert all(queried.values()), f"a measurement without a panel: {queried}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["bucket"]["query"] == Settings.model_fields["tsdb_bucket"].default
    assert variables["elevator_id"]["datasource"]["uid"] == datasource["uid"]


def test_example_toml_lists_every_setting_and_loads() -> None:
    path = DEPLOY_DIR / "gateway.example.toml"
    listed = set(re.findall(r"^(?:# )?(\w+) = ", path.read_text(), re.MULTILINE))
    assert listed == set(Settings.model_fields), (
        f"missing: {sorted(set(Settings.model_fields) - listed)}, "
        f"unknown: {sorted(listed - set(Settings.model_fields))}"
    )
    settings = load_settings(path)
    # What a fresh install must not start with: secrets in the file, a public API.
    assert settings.tokens == ""
    assert settings.http_host == "127.0.0.1"
    assert settings.spool_dir == Path("/var/lib/elevator-gateway/spool")


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    unit_file = DEPLOY_DIR / "systemd" / "elevator-gateway.service"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(unit_file.read_text())
    service = unit["Service"]
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "elevator-gateway",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/elevator-gateway",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "CapabilityBoundingSet": "",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in unit_file.read_text()
    assert int(service["TimeoutStopSec"]) >= 2 * Settings.model_fields["tsdb_timeout_s"].default
    # The spool and SQLite paths of the example config are the writable state directory.
    example = load_settings(DEPLOY_DIR / "gateway.example.toml")
    state = Path(service["ReadWritePaths"])
    assert example.spool_dir.is_relative_to(state)
    assert example.store_url == f"sqlite:///{state / 'gateway.db'}"
    assert service["ExecStart"].split()[1:] == [
        "run", "--config", "/etc/elevator-gateway/gateway.toml",
    ]  # fmt: skip

    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is not None:
        # systemd's own parser; the executable must exist, so point it at this install's.
        executable = shutil.which("elevator-gateway")
        assert executable is not None
        copy = tmp_path / unit_file.name
        copy.write_text(unit_file.read_text().replace(service["ExecStart"].split()[0], executable))
        result = subprocess.run(
            [systemd_analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True
        )
        assert (result.returncode, result.stdout + result.stderr) == (0, "")

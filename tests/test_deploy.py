"""deploy/ checked here without Docker: Mosquitto runs on deploy/'s own configuration (ACL,
password file, TLS), the gateway connects to it over TLS, and the compose file, Grafana
dashboard, systemd unit and example TOML are parsed and checked against the settings."""

from __future__ import annotations

import ipaddress
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs

from gateway.app import Gateway
from gateway.settings import ConfigError, load_settings
from tests.conftest import status_frame
from tests.services import SecureBroker, free_port, make_secure_broker, wait_for

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


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = issuer or (name, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(directory: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate for the
    gateway: ca.crt, server.crt/.key, client.crt/.key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key)
    leaves = {
        "server": ("127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        "client": (GATEWAY_USER, None),
    }
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for stem, (subject, san) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, key, (ca.subject, ca_key), san)
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return directory


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


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
    try:
        client = Client(broker.tls_port or 0, GATEWAY_USER, passwords[GATEWAY_USER], certs=certs)
    except (ssl.SSLError, OSError):
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

"""deploy/city/: the city-scale compose file parses, and its parts fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import ConfigError, Settings, load_settings, new_token

CITY = Path(__file__).resolve().parent.parent / "deploy" / "city"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((CITY / "compose.yaml").read_text())


def _example_env() -> dict[str, str]:
    lines = (CITY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _settings_of(environment: dict[str, str]) -> dict[str, str]:
    """The service's GATEWAY_* values as the gateway would see them: each ${VAR} is the
    value from .env (here: .env.example), and compose's `$$` is a `$`."""
    example = _example_env()
    values = {}
    for key, value in environment.items():
        if key.startswith("GATEWAY_"):
            value = re.sub(r"\$\{(\w+)[^}]*\}", lambda m: example[m.group(1)], str(value))
            values[key.removeprefix("GATEWAY_").lower()] = value.replace("$$", "$")
    return values


def test_every_gateway_and_api_instance_shares_one_store_and_loads() -> None:
    services = _compose()["services"]
    gateways = {n: s for n, s in services.items() if n.startswith("gateway")}
    apis = {n: s for n, s in services.items() if n.startswith("api")}
    assert len(gateways) >= 2 and len(apis) >= 2
    client_ids = [s["environment"]["GATEWAY_MQTT_CLIENT_ID"] for s in gateways.values()]
    assert len(set(client_ids)) == len(client_ids), "each persistent session needs its own id"
    stores = {
        _settings_of(s["environment"])["store_url"] for s in (*gateways.values(), *apis.values())
    }
    assert len(stores) == 1 and stores.pop().startswith("postgresql://")
    for name, service in gateways.items():
        settings = _loads_once_tokens_are_set(_settings_of(service["environment"]))
        assert settings.mqtt_topic_prefix.startswith("$share/"), name
        assert settings.cluster_group == "", f"{name}: EMQX shares by publisher already"
        assert settings.tsdb_url.startswith("http://vminsert:"), name
        assert settings.mqtt_session_expiry_s <= 300, f"{name}: a dead member's share waits"
    for name, service in apis.items():
        assert service["command"] == ["elevator-gateway", "api"], name
        _loads_once_tokens_are_set(_settings_of(service["environment"]))


def _loads_once_tokens_are_set(values: dict[str, str]) -> Settings:
    """The example's placeholder tokens refuse the start until replaced; then it loads."""
    with pytest.raises(ConfigError, match="tokens"):
        load_settings(**values)
    return load_settings(**values | {"tokens": f"dispatcher:{new_token()}"})


def test_emqx_cluster_shares_by_publisher() -> None:
    services = _compose()["services"]
    nodes = {n: s["environment"] for n, s in services.items() if n.startswith("emqx")}
    assert len(nodes) == 3
    names = {env["EMQX_NODE__NAME"] for env in nodes.values()}
    for env in nodes.values():
        assert set(re.findall(r"emqx@[\w.]+", env["EMQX_CLUSTER__STATIC__SEEDS"])) == names
        assert env["EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY"] == "hash_clientid"
    gateway_brokers = {
        re.search(r"@(\w+):", s["environment"]["GATEWAY_MQTT_URL"]).group(1)  # type: ignore[union-attr]
        for n, s in services.items()
        if n.startswith("gateway")
    }
    assert gateway_brokers <= set(nodes)


def test_postgres_replica_and_victoriametrics_cluster() -> None:
    services = _compose()["services"]
    primary, replica = services["postgres"], services["postgres-replica"]
    assert primary["environment"]["POSTGRESQL_REPLICATION_MODE"] == "master"
    assert replica["environment"]["POSTGRESQL_REPLICATION_MODE"] == "slave"
    assert replica["environment"]["POSTGRESQL_MASTER_HOST"] == "postgres"
    storage = {n for n in services if n.startswith("vmstorage")}
    for part, port in (("vminsert", 8400), ("vmselect", 8401)):
        flag = next(a for a in services[part]["command"] if a.startswith("-storageNode="))
        nodes = flag.removeprefix("-storageNode=").split(",")
        assert nodes == [f"{n}:{port}" for n in sorted(storage)], part


def test_every_variable_has_an_example_and_every_volume_is_declared() -> None:
    compose = _compose()
    text = (CITY / "compose.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+)", text)) <= set(_example_env())
    used = {
        v.split(":", 1)[0]
        for s in compose["services"].values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])

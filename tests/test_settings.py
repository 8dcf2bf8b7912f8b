from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import ConfigError, Settings, load_settings, parse_tokens


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GATEWAY_MQTT_URL", "GATEWAY_TSDB_URL", "GATEWAY_ARRIVAL_LIMIT_S"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.mqtt_client_id == "elevator-gateway"
    assert (s.tsdb_url, s.tsdb_token, s.tsdb_org, s.tsdb_bucket) == (
        "",
        "-",
        "elevators",
        "telemetry",
    )
    assert s.store_url == "sqlite:///gateway.db"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert (s.arrival_limit_s, s.arrival_warning_s, s.ack_limit_s) == (1800, 1200, 180)
    assert (s.rules_dir / "__init__.py").exists()


def test_environment_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('mqtt_url = "mqtt://broker:1884"\narrival_limit_s = 3600\n')
    monkeypatch.setenv("GATEWAY_ARRIVAL_LIMIT_S", "900")
    s = load_settings(config)
    assert s.mqtt_url == "mqtt://broker:1884"
    assert s.arrival_limit_s == 900


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mqtt_url": "http://x"}, "mqtt_url"),
        ({"http_port": 70000}, "http_port"),
        ({"tokens": "root:abc"}, "tokens"),
        ({"arrival_limit_s": 0}, "arrival_limit_s"),
    ],
)
def test_bad_values_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(**overrides)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("mqtt_ulr = 'typo'\n")
    with pytest.raises(ConfigError, match="mqtt_ulr"):
        load_settings(config)


def test_tokens() -> None:
    d, r = "d" * 24, "r" * 30
    assert parse_tokens(f"dispatcher:{d}, regulator:{r}, dispatcher:{d}") == {
        d: "dispatcher",
        r: "regulator",
    }


def test_urls_are_redacted_for_logs() -> None:
    from gateway.settings import redact_url

    assert redact_url("mqtt://gw:s3cret@broker:1883") == "mqtt://gw:***@broker:1883"
    assert (
        redact_url("https://hooks.example/alarm?token=s3cret") == "https://hooks.example/alarm?***"
    )
    assert redact_url("sqlite:///gateway.db") == "sqlite:///gateway.db"


def test_every_setting_is_documented() -> None:
    """docs/configuration.md names every setting (a row may name several: `_ORG`, `_BUCKET`)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    named = set(re.findall(r"`(GATEWAY_[A-Z0-9_]+)`", doc))
    named |= {f"GATEWAY_TSDB{suffix}" for suffix in re.findall(r"`(_[A-Z]+)`", doc)}
    missing = [f for f in Settings.model_fields if f"GATEWAY_{f.upper()}" not in named]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"

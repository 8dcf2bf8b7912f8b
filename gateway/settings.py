"""Configuration: a TOML file and `GATEWAY_*` environment variables, the environment winning.

Validated once at start; a bad value fails fast with a message naming the field.
TOML keys are the variable names without the prefix, in lower case (`mqtt_url = "..."`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, FilePath, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PACKAGED_RULES_DIR = Path(__file__).resolve().parent.parent / "alert_rules"
ROLES = ("dispatcher", "regulator", "admin")
# 24 characters of a random token are over 128 bits (token_urlsafe: 6 bits each); shorter ones
# are typed-in words, the first thing a guesser tries.
MIN_TOKEN_CHARS = 24


class ConfigError(Exception):
    """The configuration is invalid; the message names the field."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid", frozen=True)

    # Contract §5
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = "elevator-gateway"
    tsdb_url: str = ""
    tsdb_token: str = "-"
    tsdb_org: str = "elevators"
    tsdb_bucket: str = "telemetry"
    store_url: str = "sqlite:///gateway.db"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    tokens: str = ""
    arrival_limit_s: int = Field(1800, gt=0)
    arrival_warning_s: int = Field(1200, gt=0)
    ack_limit_s: int = Field(180, gt=0)
    rules_dir: Path = PACKAGED_RULES_DIR
    spool_dir: Path = Path("./spool")

    # Additions (documented in the README)
    mqtt_topic_prefix: str = Field("", description="e.g. '$share/gw/' for a shared subscription")
    # libmosquitto: C protocol code, acknowledges on receipt after journaling the message
    # (safe against a crash of the process; a crash of the machine can take the last
    # journal_fsync_interval_s). paho: pure Python, about a third of the rate, acknowledges
    # only once the frame is stored or spooled.
    mqtt_client: Literal["libmosquitto", "paho"] = "libmosquitto"
    journal_fsync_interval_s: float = Field(0.05, gt=0)
    mqtt_session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    mqtt_receive_window: int = Field(10_000, ge=1, le=65535)
    mqtt_keepalive_s: int = Field(30, ge=5)
    # TLS for mqtts://: the CA that signed the broker's certificate (system CAs when unset),
    # and a client certificate and key when the broker requires one.
    mqtt_ca_file: FilePath | None = None
    mqtt_cert_file: FilePath | None = None
    mqtt_key_file: FilePath | None = None
    batch_size: int = Field(5000, ge=1)
    # Messages cut while the writer waits for a slow store that may wait in memory (about
    # 0.5 KB each) while the pipeline goes on; past this it waits for the writer. The store's
    # answer time times the frame rate must fit: 5 s at 50,000 frames/s is 250,000.
    max_waiting_messages: int = Field(250_000, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)
    tsdb_timeout_s: float = Field(10.0, gt=0)
    spool_max_bytes: int = Field(1 << 30, gt=0)
    # Raw telemetry kept by the embedded store (no GATEWAY_TSDB_URL); incidents, timelines
    # and registry records are never pruned (5 years of records, domain.md).
    telemetry_retention_days: float = Field(30.0, gt=0)
    deadletter_keep: int = Field(10_000, ge=1)
    max_payload_bytes: int = Field(64 * 1024, ge=1)
    # Device profiles besides the packaged ones (device_profiles/), *.yaml.
    profiles_dir: Path | None = None
    log_level: str = "info"
    timezone: str = "Asia/Shanghai"  # IANA zone of report periods and monthly buckets
    # Where the public reaches this gateway's pages; the safety tags' QR codes point here.
    public_base_url: str = Field("", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")
    # Arrival limits per district (seconds); districts not listed use arrival_limit_s.
    district_arrival_limits: dict[str, int] = Field(default_factory=dict)
    # What starts the arrival clock per district: the report's receipt (`reported`, the
    # default for districts not listed) or the platform's dispatch order (`dispatched`).
    district_clock_start: dict[str, Literal["reported", "dispatched"]] = Field(default_factory=dict)
    alert_webhooks: list[str] = Field(default_factory=list)
    level2_webhooks: list[str] = Field(default_factory=list, description="rescue station")
    regulator_webhooks: list[str] = Field(default_factory=list)
    webhook_secret: str = Field("", description="HMAC-SHA256 key for X-Gateway-Signature")
    # More role:token entries, one a line (# comments): read at start and again on SIGHUP,
    # so tokens rotate without a restart; e.g. a Docker or systemd credential file.
    tokens_file: FilePath | None = None
    # /docs and /openapi.json without a login (they describe the API, not its data).
    public_docs: bool = False
    # Each endpoint is delivered on its own: a request times out after webhook_timeout_s, a
    # failure is retried after 2, 4, 8 ... s up to webhook_max_backoff_s, and a notification is
    # given up (kept as a dead letter) after webhook_max_attempts or webhook_max_age_s.
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_backoff_s: float = Field(300.0, gt=0)
    webhook_max_attempts: int = Field(100, ge=1)
    webhook_max_age_s: float = Field(86_400.0, gt=0)
    tick_interval_s: float = Field(0.25, gt=0)
    # Offline and silence alarms for elevators in the registry, and for others only if they
    # sent a status frame within this many hours (not for a retained `online` state alone).
    offline_heard_within_h: float = Field(24.0, gt=0)
    # What is kept of an elevator (rules, dedup, black box) is dropped after this long unheard.
    evict_after_h: float = Field(48.0, gt=0)
    # Per elevator: sustained frames/s and burst (a reconnecting device sends its backlog).
    rate_limit_per_s: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(600, ge=1)
    # Scale-out on a round-robin broker (see gateway/cluster.py): gateways naming the same
    # group split the elevators between them; each renews a lease of this length.
    cluster_group: str = Field("", max_length=64)
    cluster_lease_s: float = Field(10.0, gt=0)
    # Other members' frames held for a takeover: at least the group's frames per second times
    # two leases (200,000: 10,000 frames/s with the default lease).
    cluster_max_held: int = Field(200_000, ge=1)

    @model_validator(mode="after")
    def _cluster_needs_every_frame(self) -> Self:
        # Each member must see every frame to pick its own; a shared subscription would hand
        # another member's frames to it, to be dropped.
        if self.cluster_group and self.mqtt_topic_prefix.startswith("$share/"):
            raise ValueError("cluster_group cannot be used with a $share/ mqtt_topic_prefix")
        return self

    @field_validator("tokens")
    @classmethod
    def _tokens_are_valid(cls, value: str) -> str:
        parse_tokens(value)
        return value

    @model_validator(mode="after")
    def _token_file_is_valid(self) -> Self:
        if self.tokens_file is not None:
            try:
                tokens_of(self)
            except ValueError as exc:
                raise ValueError(f"tokens_file: {exc}") from None
        return self

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> Self:
        # Certificates with a plain mqtt:// URL would be ignored: refuse rather than run
        # unencrypted while the operator believes otherwise.
        tls_files = (self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)
        if any(tls_files) and not self.mqtt_url.startswith("mqtts://"):
            raise ValueError("mqtt_ca_file, mqtt_cert_file and mqtt_key_file need an mqtts:// URL")
        if self.mqtt_key_file and not self.mqtt_cert_file:
            raise ValueError("mqtt_key_file needs mqtt_cert_file")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments, then the environment, then the TOML file (if one was given).
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def parse_tokens(value: str) -> dict[str, str]:
    """`role:token,role:token` -> {token: role}. A token shorter than MIN_TOKEN_CHARS, or one
    listed with two roles (which role would it carry?), is refused; the message names the
    entry by its role and position, never by the token."""
    tokens: dict[str, str] = {}
    for n, pair in enumerate(filter(None, (p.strip() for p in value.split(","))), start=1):
        role, sep, token = pair.partition(":")
        if not sep or not token:
            raise ValueError("each entry must be role:token")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"entry {n} ({role}): token of {len(token)} characters, at least "
                f"{MIN_TOKEN_CHARS} needed (`elevator-gateway token new --role {role}` makes one)"
            )
        if tokens.get(token, role) != role:
            raise ValueError(f"entry {n}: the same token is listed as {tokens[token]} and {role}")
        tokens[token] = role
    return tokens


def tokens_of(settings: Settings) -> dict[str, str]:
    """Every token of `tokens` and `tokens_file` (read now) -> role."""
    entries = [settings.tokens]
    if settings.tokens_file is not None:
        lines = settings.tokens_file.read_text().splitlines()
        entries += [line for line in lines if not line.lstrip().startswith("#")]
    return parse_tokens(",".join(entries))


def new_token() -> str:
    """A random token of 43 characters (256 bits), safe in a header, URL or TOML string."""
    return secrets.token_urlsafe(32)


def redact_url(url: str) -> str:
    """`url` with its password and query (webhook URLs often carry a token there) replaced by
    `***`, for logs and messages."""
    parts = urlsplit(url)
    if not parts.query and parts.password is None:
        return url  # (urlunsplit would also drop an empty netloc: sqlite:/// -> sqlite:/)
    if parts.query:
        parts = parts._replace(query="***")
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    return urlunsplit(parts)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `overrides`, the environment and `config_file` (TOML), in falling priority;
    raises ConfigError naming the offending field."""
    settings_cls = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})
        settings_cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None

"""The `elevator-gateway` command."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from gateway import logs
from gateway.profiles import ProfileError
from gateway.profiles.cli import app as profiles_app
from gateway.report_cli import report
from gateway.rules import RuleError
from gateway.rules.cli import app as rules_app
from gateway.settings import (
    ROLES,
    ConfigError,
    Settings,
    load_settings,
    new_token,
    tokens_of,
)

if TYPE_CHECKING:
    from gateway.apiserver import ApiServer
    from gateway.app import Gateway

log = structlog.get_logger(__name__)

app = typer.Typer(
    help="Elevator telemetry and rescue gateway: MQTT frames in, time series, rescue "
    "incidents and dispatch alerts out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file; GATEWAY_* variables win."),
]


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the gateway in the foreground until SIGTERM or SIGINT, then flush and stop."""
    from gateway.app import Gateway

    settings = _settings_or_exit(config)
    logs.configure(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        gateway = Gateway(settings).start()
    except RuleError as exc:
        typer.echo(f"error: rule files refused:\n{exc}", err=True)
        raise typer.Exit(2) from None
    except ProfileError as exc:
        typer.echo(f"error: device profiles refused:\n{exc}", err=True)
        raise typer.Exit(2) from None
    signal.signal(signal.SIGHUP, lambda *_: _reload(gateway, config))
    try:
        stop.wait()
    finally:
        gateway.stop()


@app.command()
def api(config: ConfigOption = None) -> None:
    """Serve only the HTTP API and pages on the shared store (no MQTT ingest, no ticker):
    run any number of these apart from the gateways, which deliver and fire the clocks."""
    from gateway.apiserver import ApiServer

    settings = _settings_or_exit(config)
    logs.configure(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ApiServer(settings).start()
    signal.signal(signal.SIGHUP, lambda *_: _reload_tokens(server, config))
    try:
        stop.wait()
    finally:
        server.stop()


@app.command()
def demo(
    elevators: Annotated[int, typer.Option(min=3, max=2000, help="Simulated elevators.")] = 50,
    speed: Annotated[
        float, typer.Option(min=1, max=600, help="Simulated seconds per real second.")
    ] = 20.0,
    port: Annotated[int, typer.Option(help="HTTP port of the API and pages.")] = 8080,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the demo's data here (default: a new temp dir).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 7,
) -> None:
    """The whole product on this machine, faster than real time.

    A broker, the gateway on embedded stores and a simulated fleet: an entrapment, a crew's
    dispatch and arrival, and a missed 30-minute limit all show within two minutes."""
    from rich.console import Console

    from gateway.demo import DemoOptions, run_demo
    from gateway.embedded import BrokerError

    logs.configure("warning")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    options = DemoOptions(elevators, speed, port, data_dir, seed)
    try:
        run_demo(options, stop, Console())
    except BrokerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


app.add_typer(rules_app, name="rules")
app.add_typer(profiles_app, name="profiles")

app.command("report")(report)

registry_app = typer.Typer(
    help="The elevator registry (one elevator, one file).", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")


@registry_app.command("import")
def registry_import(
    csv_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV with a header row: elevator_id and any of "
            "site, district, address, maintenance_company, "
            "maintenance_phone, use_unit, inspection_due, last_maintenance "
            "(dates as YYYY-MM-DD).",
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Create or update registry records from a CSV file; every row is checked first and a
    bad row stops the import before anything is written."""
    from gateway.clock import RealClock
    from gateway.registry import RegistryImportError, read_registry_csv
    from gateway.store import open_store

    settings = _settings_or_exit(config)
    try:
        records = read_registry_csv(csv_file)
    except RegistryImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    store = open_store(settings.store_url)
    now = RealClock().now()
    created = sum(store.put_elevator(eid, record, now) for eid, record in records)
    store.close()
    typer.echo(
        f"imported {len(records)} elevators ({created} new, {len(records) - created} "
        f"updated) into {settings.store_url.split('@')[-1]}"
    )


@registry_app.command("qr")
def registry_qr(
    out: Annotated[
        Path, typer.Option("--out", "-o", file_okay=False, help="Directory for the SVG files.")
    ],
    config: ConfigOption = None,
) -> None:
    """Write a printable QR code (SVG) for the safety tag of every registered elevator: it
    opens the elevator's public page under `public_base_url`, with the registration code
    written under it."""
    from gateway.qr import write_tags
    from gateway.store import open_store

    settings = _settings_or_exit(config)
    if not settings.public_base_url:
        typer.echo("error: set public_base_url (GATEWAY_PUBLIC_BASE_URL) first", err=True)
        raise typer.Exit(2)
    store = open_store(settings.store_url)
    elevator_ids = sorted(r["elevator_id"] for r in store.all_elevators())
    store.close()
    written = write_tags(settings.public_base_url, elevator_ids, out)
    typer.echo(f"wrote {len(written)} QR codes to {out}")


drill_app = typer.Typer(
    help="Rescue drills: each maintenance unit drills at least every 6 months.",
    no_args_is_help=True,
)
app.add_typer(drill_app, name="drill")


@drill_app.command("record")
def drill_record(
    company: Annotated[str, typer.Option(help="The maintenance company that drilled.")],
    at: Annotated[
        str,
        typer.Option(help="When: YYYY-MM-DD or ISO 8601; without an offset, local time."),
    ],
    elevator: Annotated[
        str, typer.Option(help="The elevator drilled on, if one was ('-': none).")
    ] = "-",
    note: Annotated[str | None, typer.Option(help="What was drilled.")] = None,
    config: ConfigOption = None,
) -> None:
    """Record a drill held off-line (no incident on the board): a closed drill incident of
    the company, left out of every figure, which clears it from `drills-missing`."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from gateway.app import policy
    from gateway.clock import RealClock
    from gateway.incidents.model import to_json
    from gateway.incidents.service import drill_record as record
    from gateway.store import open_store

    settings = _settings_or_exit(config)
    now = RealClock().now()
    try:
        held = datetime.fromisoformat(at)
    except ValueError:
        typer.echo(f"error: --at: expected YYYY-MM-DD or ISO 8601, got {at!r}", err=True)
        raise typer.Exit(2) from None
    if held.tzinfo is None:
        held = held.replace(tzinfo=ZoneInfo(settings.timezone))
    if held > now:
        typer.echo("error: --at: a drill to record has been held: not in the future", err=True)
        raise typer.Exit(2)
    store = open_store(settings.store_url)
    district = (store.get_elevator(elevator) or {}).get("district")
    incident = record(
        company=company, at=held, elevator_id=elevator, by="cli", note=note,
        limits=policy(settings).limits_for(district), now=now,
    )  # fmt: skip
    store.insert_incident(incident, [], now)
    store.close()
    typer.echo(f"recorded drill {incident.id} of {company} at {to_json(incident)['opened_at']}")


deadletter_app = typer.Typer(
    help="Rejected messages: what was refused, and replaying what can be stored now.",
    no_args_is_help=True,
)
app.add_typer(deadletter_app, name="deadletter")


@deadletter_app.command("summary")
def deadletter_summary(config: ConfigOption = None) -> None:
    """Count the dead letter's records by reason and elevator (the newest 100,000)."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from gateway.store import open_store

    store = open_store(_settings_or_exit(config).store_url)
    rows = store.dead_letters(limit=100_000)
    store.close()
    counts = Counter((r["reason"], r["elevator_id"] or "-") for r in rows)
    table = Table("reason", "elevator", "records", title=f"dead letter: {len(rows):,} records")
    for (reason, elevator_id), n in counts.most_common(50):
        table.add_row(reason, elevator_id, f"{n:,}")
    Console().print(table)


@deadletter_app.command("replay")
def deadletter_replay(
    reason: Annotated[
        str, typer.Option(help="rate_limited (a device's burst) or tsdb_refused (the store's 4xx).")
    ],
    elevator_id: Annotated[str | None, typer.Option(help="Only this elevator's.")] = None,
    config: ConfigOption = None,
) -> None:
    """Store the dead letter's frames of one reason now, straight to the time-series store
    (the rules do not see them again: they are history), and remove the records stored.
    Run it once the cause is gone: the device fixed, the store's retention raised."""
    from gateway.clock import RealClock
    from gateway.deadletter import REPLAYABLE, replay_points
    from gateway.registry import RegistryCache
    from gateway.store import open_store
    from gateway.tsdb import EmbeddedSink, InfluxSink, Sink, SinkError

    if reason not in REPLAYABLE:
        typer.echo(f"error: only {' and '.join(REPLAYABLE)} records can be replayed", err=True)
        raise typer.Exit(2)
    s = _settings_or_exit(config)
    store = open_store(s.store_url)
    registry = RegistryCache()
    registry.load(store.all_elevators())
    sink: Sink = (
        InfluxSink(s.tsdb_url, s.tsdb_token, s.tsdb_org, s.tsdb_bucket, s.tsdb_timeout_s)
        if s.tsdb_url
        else EmbeddedSink(store, RealClock(), s.telemetry_retention_days * 86_400)
    )
    rows = store.dead_letters(limit=10**9, reason=reason, elevator_id=elevator_id)
    points = replay_points(list(reversed(rows)), registry.tags_for)  # oldest first
    stored = 0
    try:
        for start in range(0, len(points), 5000):
            chunk = points[start : start + 5000]
            sink.write([p for _id, p in chunk])
            store.delete_dead_letters([i for i, _p in chunk])
            stored += len(chunk)
    except SinkError as exc:
        typer.echo(f"error: the store refused ({exc}); {stored:,} stored, the rest kept", err=True)
        raise typer.Exit(1) from None
    finally:
        sink.close()
        store.close()
    typer.echo(f"replayed {stored:,} of {len(rows):,} {reason} records into the time-series store")


Role = StrEnum("Role", {name: name for name in ROLES})
token_app = typer.Typer(help="API tokens (GATEWAY_TOKENS, tokens_file).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(
    role: Annotated[Role, typer.Option(help="The token's role.")],
) -> None:
    """Print a new random token as a `role:token` entry for GATEWAY_TOKENS or tokens_file."""
    typer.echo(f"{role}:{new_token()}")


def _reload(gateway: Gateway, config: Path | None) -> None:
    gateway.reload_rules()
    _reload_tokens(gateway, config)


def _reload_tokens(server: Gateway | ApiServer, config: Path | None) -> None:
    """On SIGHUP: the tokens of the configuration as it is now (TOML file, tokens_file; the
    environment cannot change under a running process). A bad configuration is refused and
    the tokens in force stay."""
    try:
        tokens = tokens_of(load_settings(config))
    except (ConfigError, OSError, ValueError) as exc:
        log.error("tokens_reload_refused", error=str(exc), detail="the previous tokens stay")
        return
    server.tokens.replace(tokens)
    log.info("tokens_reloaded", tokens=len(tokens))


def _settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()

"""The `elevator-gateway` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from gateway import logs
from gateway.report_cli import report
from gateway.rules import RuleError
from gateway.rules.cli import app as rules_app
from gateway.settings import ConfigError, Settings, load_settings

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
    signal.signal(signal.SIGHUP, lambda *_: gateway.reload_rules())
    try:
        stop.wait()
    finally:
        gateway.stop()


app.add_typer(rules_app, name="rules")

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
            "use_unit, inspection_due, last_maintenance "
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


def _settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()

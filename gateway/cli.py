"""The `elevator-gateway` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from gateway import logs
from gateway.profiles import ProfileError
from gateway.profiles.cli import app as profiles_app
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
    except ProfileError as exc:
        typer.echo(f"error: device profiles refused:\n{exc}", err=True)
        raise typer.Exit(2) from None
    signal.signal(signal.SIGHUP, lambda *_: gateway.reload_rules())
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


def _settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()

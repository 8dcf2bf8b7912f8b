"""The `elevator-gateway` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from gateway import logs
from gateway.settings import ConfigError, load_settings

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


@app.callback()
def _root() -> None:
    """Keeps `run` a subcommand while it is the only one."""


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the gateway in the foreground until SIGTERM or SIGINT, then flush and stop."""
    from gateway.app import Gateway

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logs.configure(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Gateway(settings):
        stop.wait()


def main() -> None:
    app()

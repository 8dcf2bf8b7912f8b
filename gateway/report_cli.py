"""`elevator-gateway report`: the regulator report as Rich tables, CSV or JSON, or the
bulletin (`gateway.reports.bulletin`) as one self-contained HTML file (inline SVG, no
scripts, nothing fetched) to mail around, or as a PDF printed by headless Chromium."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, get_args

import typer
from rich.console import Console
from rich.table import Table

from gateway import reports
from gateway.pdf import ChromiumMissing, print_pdf
from gateway.reports import SECTIONS, GroupBy, bulletin_html
from gateway.reports.bulletin import bulletin

# Typer offers enums as choices.
Format = StrEnum("Format", {name: name for name in ("table", "csv", "json", "html", "pdf")})
# A store written on a scaled clock (the demo) runs ahead of the wall: its newest change is
# then the report's "now", so a report without --until covers what the store holds.
_PAST_NEWEST: Final = timedelta(seconds=1)
Group = StrEnum("Group", {name: name for name in get_args(GroupBy)})
Section = StrEnum("Section", {name: name for name in SECTIONS})


@dataclass(frozen=True, slots=True)
class Meta:
    """What the report covers, printed with it."""

    since: datetime
    until: datetime
    as_of: datetime
    timezone: str
    group_by: str
    arrival_limit_s: int

    def json(self) -> dict[str, Any]:
        return reports.to_json([self])[0]


def report(
    since: Annotated[
        str | None,
        typer.Option(help="Start, inclusive: YYYY-MM-DD (local midnight) or ISO 8601 time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="End, exclusive: default now, or just past the newest incident of a store "
            "written ahead of the clock (the demo's); same forms as --since."
        ),
    ] = None,
    group_by: Annotated[Group, typer.Option("--group-by")] = Group.maintenance_company,
    fmt: Annotated[
        Format,
        typer.Option("--format", help="html and pdf: the bulletin (pdf through Chromium)."),
    ] = Format.table,
    section: Annotated[
        list[Section] | None,
        typer.Option("--section", help="Only this section (repeatable); default all."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write; for CSV of several sections, a directory."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML configuration file; GATEWAY_* variables win."),
    ] = None,
) -> None:
    """Response times, compliance lists and data quality for a period, from the store; as
    html or pdf, the regulator's bulletin with the previous period beside each figure.

    Periods are in the configured `timezone`; compliance lists describe the period's end,
    or now if that is earlier. A store that does not exist is refused, never created."""
    from gateway.cli import _settings_or_exit
    from gateway.clock import RealClock
    from gateway.store import StoreMissing, open_existing_store

    settings = _settings_or_exit(config)
    names = [str(s) for s in section] if section else list(SECTIONS)
    _check_output(fmt, section, out, len(names))
    try:
        store = open_existing_store(settings.store_url)
    except StoreMissing as exc:
        _fail(
            f"no gateway store at {exc.url} (nothing was created): point GATEWAY_STORE_URL or "
            "--config at the store the gateway writes (the demo prints its own)"
        )
    try:
        now = RealClock().now()
        newest = store.newest_incident_at()
        if newest is not None and newest >= now:
            now = newest + _PAST_NEWEST
        try:
            zone = reports.zone_named(settings.timezone)
            start, end, as_of = reports.resolve_period(since, until, zone, now)
        except reports.PeriodError as exc:
            _fail(str(exc))
        inputs = reports.gather(store, start, end, as_of)
    finally:
        store.close()
    built = reports.build(inputs, start, end, as_of, zone, group_by.value)
    if fmt in ("html", "pdf"):
        made = bulletin(inputs.incidents, inputs.registry, start, end, as_of)
        html = bulletin_html.document(made, built, zone, settings.arrival_limit_s)
        if fmt == "html":
            _emit(html, out)
        else:
            assert out is not None  # checked before the store was read
            try:
                print_pdf(html, out)
            except ChromiumMissing as exc:
                _fail(str(exc))
        return
    chosen = {name: built[name] for name in names}
    meta = Meta(start, end, as_of, settings.timezone, group_by.value, settings.arrival_limit_s)
    if fmt == "csv":
        _write_csv(chosen, out)
    elif fmt == "table" and out is None:
        _print_tables(chosen, meta, Console())
    elif fmt == "table":
        with out.open("w", encoding="utf-8") as stream:
            _print_tables(chosen, meta, Console(file=stream, width=200))
    else:
        report = {"report": meta.json(), **{n: reports.to_json(r) for n, r in chosen.items()}}
        _emit(json.dumps(report, indent=2), out)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_output(fmt: Format, section: list[Section] | None, out: Path | None, n: int) -> None:
    """Refuse what cannot be written before the store is read."""
    if fmt == "csv" and n > 1 and out is None:
        _fail("CSV of several sections needs --out DIR (or one --section)")
    if fmt in ("html", "pdf") and section:
        _fail("the bulletin (html, pdf) is the whole report; --section is for table, csv, json")
    if fmt == "pdf" and out is None:
        _fail("PDF needs --out FILE.pdf")


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")


def _write_csv(chosen: dict[str, list[Any]], out: Path | None) -> None:
    if len(chosen) == 1 and (out is None or not out.is_dir()):
        [(name, rows)] = chosen.items()
        text = reports.to_csv(SECTIONS[name], rows)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
        return
    assert out is not None  # checked before the store was read
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in chosen.items():
        (out / f"{name}.csv").write_text(reports.to_csv(SECTIONS[name], rows), encoding="utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return " ".join(value) if isinstance(value, list) else str(value)


def _columns(name: str) -> list[str]:
    return reports.to_csv(SECTIONS[name], ()).strip().split(",")


def _print_tables(chosen: dict[str, list[Any]], meta: Meta, console: Console) -> None:
    m = meta.json()
    console.print(
        f"[bold]Regulator report[/bold] {m['since']} – {m['until']} "
        f"({meta.timezone}), compliance as of {m['as_of']}, by {meta.group_by}"
    )
    for name, rows in chosen.items():
        table = Table(*_columns(name), title=name, title_justify="left", caption=None)
        for row in reports.to_json(rows):
            table.add_row(*(_cell(v) for v in row.values()))
        if not rows:
            table.caption = "none"
        console.print(table)

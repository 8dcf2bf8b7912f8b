"""`elevator-gateway report`: the regulator report as Rich tables, CSV, JSON or one
self-contained HTML file (inline SVG charts, no scripts, nothing fetched) to mail around."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from html import escape
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.table import Table

from gateway import reports
from gateway.reports import SECTIONS, GroupBy, GroupFigures, HistogramBin

# Typer offers enums as choices.
Format = StrEnum("Format", {name: name for name in ("table", "csv", "json", "html")})
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
        str | None, typer.Option(help="End, exclusive (default now); same forms as --since.")
    ] = None,
    group_by: Annotated[Group, typer.Option("--group-by")] = Group.maintenance_company,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
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
    """Response times, compliance lists and data quality for a period, from the store.

    Periods are in the configured `timezone`; compliance lists describe the period's end,
    or now if that is earlier."""
    from gateway.cli import _settings_or_exit
    from gateway.clock import RealClock
    from gateway.store import open_store

    settings = _settings_or_exit(config)
    try:
        zone = reports.zone_named(settings.timezone)
        start, end, as_of = reports.resolve_period(since, until, zone, RealClock().now())
    except reports.PeriodError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    names = [str(s) for s in section] if section else list(SECTIONS)
    if fmt == "csv" and len(names) > 1 and out is None:
        typer.echo("error: CSV of several sections needs --out DIR (or one --section)", err=True)
        raise typer.Exit(2)
    store = open_store(settings.store_url)
    try:
        built = reports.build(
            reports.gather(store, start, end, as_of), start, end, as_of, zone, group_by.value
        )
    finally:
        store.close()
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
        text = (
            render_html(chosen, meta)
            if fmt == "html"
            else json.dumps(
                {"report": meta.json(), **{n: reports.to_json(r) for n, r in chosen.items()}},
                indent=2,
            )
        )
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


# -- HTML ----------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:12px}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.none{color:#777;font-style:italic}
svg{display:block;margin:.5em 0}svg text{font:11px sans-serif;fill:#333}
.bar{fill:#4a78b5}.limit{stroke:#c0392b;stroke-width:2;stroke-dasharray:6 3}
.line{fill:none;stroke:#e67e22;stroke-width:2}.axis{stroke:#888}
pre{white-space:pre-wrap;font-size:12px;background:#f8f8f8;padding:.5em}
"""


def _svg(chart_id: str, title: str, width: int, height: int, body: Sequence[str]) -> str:
    return (
        f'<svg id="{chart_id}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _histogram(bins: Sequence[HistogramBin], limit_s: int) -> str:
    width, height, left, bottom, top = 720, 260, 40, 40, 20
    bar_w = (width - left - 10) / len(bins)
    peak = max((b.arrivals for b in bins), default=0) or 1
    scale = (height - bottom - top) / peak
    body = [
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}"/>'
    ]
    for n, b in enumerate(bins):
        x, h = left + n * bar_w, b.arrivals * scale
        label = f"{b.from_s // 60}–{b.to_s // 60}" if b.to_s is not None else f"≥{b.from_s // 60}"
        body.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{height - bottom - h:.1f}" '
            f'width="{bar_w - 2:.1f}" height="{h:.1f}"><title>{label} min: {b.arrivals}'
            f"</title></rect>"
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{label}</text>'
        )
        if b.arrivals:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom - h - 3:.1f}" '
                f'text-anchor="middle">{b.arrivals}</text>'
            )
    bin_s = bins[0].to_s or 1
    limit_x = left + limit_s / bin_s * bar_w
    body.append(
        f'<line id="limit-line" class="limit" x1="{limit_x:.1f}" y1="{top - 10}" '
        f'x2="{limit_x:.1f}" y2="{height - bottom}"/>'
        f'<text x="{limit_x + 4:.1f}" y="{top}" fill="#c0392b">{limit_s / 60:g}-minute limit</text>'
        f'<text x="{(width + left) / 2}" y="{height - 8}" text-anchor="middle">'
        f"arrival time (minutes)</text>"
    )
    return _svg("chart-arrival-histogram", "Arrival-time histogram", width, height, body)


def _company_bars(groups: Sequence[GroupFigures], group_by: str) -> str:
    row_h, label_w, bar_max = 24, 220, 420
    height = max(len(groups), 1) * row_h + 30
    body = []
    for n, g in enumerate(groups):
        y = 10 + n * row_h
        pct = g.within_limit_pct or 0.0
        shown = "–" if g.within_limit_pct is None else f"{pct:g}%"
        body.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(str(g.group))}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_max * pct / 100:.1f}" '
            f'height="{row_h - 6}"/>'
            f'<text x="{label_w + bar_max * pct / 100 + 6:.1f}" y="{y + 15}">{shown} within '
            f"limit of {g.incidents} ({g.breaches} breaches)</text>"
        )
    body.append(
        f'<line class="axis" x1="{label_w}" y1="5" x2="{label_w}" y2="{height - 20}"/>'
        f'<text x="{label_w}" y="{height - 5}">arrivals within the limit, % (by '
        f"{escape(group_by)})</text>"
    )
    return _svg("chart-companies", "Within-limit rate per group", 900, height, body)


def _monthly(months: Sequence[GroupFigures]) -> str:
    width, height, left, bottom, top = 720, 240, 40, 40, 20
    step = min((width - left - 40) / max(len(months), 1), 90.0)
    peak = max((m.incidents for m in months), default=0) or 1
    plot_h = height - bottom - top
    body = [
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 40}" '
        f'y2="{height - bottom}"/>'
    ]
    points = []
    for n, m in enumerate(months):
        x, h = left + n * step, m.incidents / peak * plot_h
        body.append(
            f'<rect class="bar" x="{x + 4:.1f}" y="{height - bottom - h:.1f}" '
            f'width="{step - 8:.1f}" height="{h:.1f}"><title>{escape(str(m.group))}: '
            f"{m.incidents} incidents</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
            f"{escape(str(m.group))}</text>"
        )
        if m.within_limit_pct is not None:
            y = height - bottom - m.within_limit_pct / 100 * plot_h
            points.append(f"{x + step / 2:.1f},{y:.1f}")
    if points:
        body.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    body.append(
        f'<text x="{left}" y="{height - 8}">bars: incidents per month (peak {peak}); '
        f"line: % arrived within the limit (0–100)</text>"
    )
    return _svg("chart-monthly", "Monthly trend", width, height, body)


def _html_table(name: str, rows: list[Any]) -> str:
    if not rows:
        return '<p class="none">none</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in _columns(name))
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
        for row in reports.to_json(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(chosen: dict[str, list[Any]], meta: Meta) -> str:
    """One self-contained page: charts of the sections it has, then every section's table."""
    m = meta.json()
    charts = []
    if "arrival-histogram" in chosen:
        charts.append(
            "<h2>Arrival times</h2>" + _histogram(chosen["arrival-histogram"], meta.arrival_limit_s)
        )
    if "response-times" in chosen:
        charts.append(
            f"<h2>Per {escape(meta.group_by)}</h2>"
            + _company_bars(chosen["response-times"], meta.group_by)
        )
    if "monthly-trend" in chosen:
        charts.append("<h2>Monthly trend</h2>" + _monthly(chosen["monthly-trend"]))
    tables = "".join(
        f'<h2 id="{name}">{escape(name)}</h2>{_html_table(name, rows)}'
        for name, rows in chosen.items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        # Nothing may be fetched or run: the file must work offline and as a mail attachment.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>Regulator report {m['since']} – {m['until']}</title><style>{_CSS}</style>"
        f"</head><body><h1>Regulator report</h1><p>Period {m['since']} to {m['until']} "
        f"(times UTC; periods and months in {escape(meta.timezone)}); compliance lists as of "
        f"{m['as_of']}; grouped by {escape(meta.group_by)}.</p>"
        f"{''.join(charts)}{tables}"
        f"<h2>Definitions</h2><pre>{escape(reports.__doc__ or '')}</pre></body></html>\n"
    )

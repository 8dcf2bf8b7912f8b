"""Rendering report rows: JSON objects and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import fields
from datetime import date, datetime
from typing import Any, Final


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_json(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows as JSON objects; times RFC 3339 UTC, dates ISO."""
    return [{f.name: _plain(getattr(r, f.name)) for f in fields(r)} for r in rows]


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Lists space-separated, None empty; text a spreadsheet would run as a formula (an
    address or a note typed by anyone) gets a leading apostrophe, so it stays text. Line
    breaks become LF, which the writer quotes (a bare CR it leaves unquoted, and a
    spreadsheet would start a row there)."""
    if isinstance(value, list):
        value = " ".join(value)
    if value is None:
        return ""
    if isinstance(value, str):
        if value.startswith(_FORMULA_START):
            value = "'" + value
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def to_csv(row_type: type, rows: Iterable[Any]) -> str:
    """Rows as CSV with a header (also when empty); cells as `_csv_cell` makes them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(f.name for f in fields(row_type))
    for row in to_json(rows):
        writer.writerow(_csv_cell(v) for v in row.values())
    return out.getvalue()

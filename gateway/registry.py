"""Registry records from a CSV file, validated row by row before anything is written."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

from gateway.frames import ELEVATOR_ID_RE
from gateway.store import REGISTRY_FIELDS
from gateway.tsdb import escape_tag

_DATE_FIELDS = ("inspection_due", "last_maintenance")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # as the API refuses: no tag can carry one


class RegistryImportError(ValueError):
    """A row is invalid; the message names the file, line and field."""


Record = dict[str, str | date | None]


def read_registry_csv(path: Path) -> list[tuple[str, Record]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "elevator_id" not in header:
            raise RegistryImportError(f"{path}: the header has no elevator_id column")
        unknown = set(header) - {"elevator_id", *REGISTRY_FIELDS}
        if unknown:
            raise RegistryImportError(f"{path}: unknown columns {', '.join(sorted(unknown))}")
        return [_record(path, reader.line_num, row) for row in reader]


def _record(path: Path, line: int, row: dict[str, str]) -> tuple[str, Record]:
    elevator_id = (row.get("elevator_id") or "").strip()
    if not ELEVATOR_ID_RE.fullmatch(elevator_id):
        raise RegistryImportError(
            f"{path}:{line}: elevator_id {elevator_id!r} is not 1-64 of A-Z a-z 0-9 _ -"
        )
    record: Record = {}
    for field in REGISTRY_FIELDS:
        value = (row.get(field) or "").strip() or None
        if value is not None and field in _DATE_FIELDS:
            try:
                record[field] = date.fromisoformat(value)
            except ValueError:
                raise RegistryImportError(
                    f"{path}:{line}: {field} {value!r} is not a date (YYYY-MM-DD)"
                ) from None
        elif value is not None and _CONTROL.search(value):
            raise RegistryImportError(
                f"{path}:{line}: {field} {value!r} contains a line break or control character"
            )
        else:
            record[field] = value
    return elevator_id, record


class RegistryCache:
    """What the hot path needs from the registry (site, time-series tags), in memory.

    Refreshed from the store now and then (other instances may change it) and updated at once
    when this process's API writes a record.
    """

    def __init__(self) -> None:
        self._site: dict[str, str] = {}
        self._tags: dict[str, str] = {}

    def load(self, records: list[dict[str, object]]) -> None:
        site: dict[str, str] = {}
        tags: dict[str, str] = {}
        for record in records:
            eid = str(record["elevator_id"])
            if record.get("site"):
                site[eid] = str(record["site"])
            tags[eid] = _tags(record)
        self._site, self._tags = site, tags

    def update(self, elevator_id: str, record: dict[str, object]) -> None:
        if record.get("site"):
            self._site[elevator_id] = str(record["site"])
        else:
            self._site.pop(elevator_id, None)
        self._tags[elevator_id] = _tags(record)

    def registered(self, elevator_id: str) -> bool:
        return elevator_id in self._tags

    def site_of(self, elevator_id: str) -> str | None:
        return self._site.get(elevator_id)

    def tags_for(self, elevator_id: str) -> str:
        return self._tags.get(elevator_id, "")


def _tags(record: dict[str, object]) -> str:
    return "".join(
        f",{key}={escape_tag(str(record[key]))}"
        for key in ("district", "maintenance_company")
        if record.get(key)
    )

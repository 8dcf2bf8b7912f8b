"""Ground truth: one label per injected fault or crew visit, for scoring the gateway.

Written as JSON lines (`.jsonl`, the default) or CSV (`.csv`), one row per label, in the
order the faults end; faults still running when the fleet stops have `end` empty.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from simulators.device import Device

FIELDS = ("elevator_id", "kind", "cause", "start", "end", "codes")


@dataclass(frozen=True, slots=True)
class Label:
    elevator_id: str
    kind: str  # "entrapment", "maintenance", or a fault code
    cause: str | None  # for entrapments: between_floors, at_landing, power_cut
    start: str  # RFC 3339, device time
    end: str | None  # entrapments: passengers freed; others: service restored
    codes: tuple[str, ...]  # event codes the controller raised for it


def make_label(
    device: Device,
    kind: str,
    cause: str | None,
    start_s: float,
    end_s: float | None,
    codes: tuple[str, ...],
) -> Label:
    def at(t: float) -> str:
        return device.time(t).isoformat(timespec="milliseconds")

    return Label(
        device.elevator_id, kind, cause, at(start_s), None if end_s is None else at(end_s), codes
    )


class LabelWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", newline="")
        self._csv = csv.writer(self._file) if path.suffix == ".csv" else None
        if self._csv is not None:
            self._csv.writerow(FIELDS)

    def write(self, label: Label) -> None:
        row = asdict(label)
        if self._csv is not None:
            row["codes"] = " ".join(label.codes)
            self._csv.writerow([row[f] for f in FIELDS])
        else:
            row["codes"] = list(label.codes)
            self._file.write(json.dumps(row) + "\n")
        self._file.flush()  # a label is useful while the run is still going

    def close(self) -> None:
        self._file.close()

"""The closing table of issue 6: runs tests/test_faults.py (real Mosquitto, VictoriaMetrics
and gateway processes) and prints, per fault injected, the frames sent and stored, the
duplicates stored and the incidents lost, as the tests measured them.

    python bench/faults_report.py

Exits with pytest's status: a row is only printed for a test that passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    ("fault", "fault injected"),
    ("sent", "frames sent"),
    ("stored", "frames stored"),
    ("duplicates", "duplicates"),
    ("incidents_lost", "incidents lost"),
    ("note", "note"),
)


def table(rows: list[dict[str, object]]) -> str:
    """The rows as a Markdown table, numbers with thousands separators."""

    def cell(value: object) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = [
        "| " + " | ".join(title for _key, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(cell(row[key]) for key, _t in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "faults.jsonl"
        env = os.environ | {"GATEWAY_FAULTS_REPORT": str(rows_file)}
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        status = subprocess.run([*pytest, "tests/test_faults.py"], cwd=ROOT, env=env).returncode
        text = rows_file.read_text() if rows_file.exists() else ""
    print(table([json.loads(line) for line in text.splitlines()]))
    return status


if __name__ == "__main__":
    sys.exit(main())

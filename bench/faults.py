"""The ledger under faults: runs the fault suites (real Mosquitto, VictoriaMetrics, PostgreSQL
and gateway processes) with the faults at full length, and prints one row per fault:
published, acknowledged by the broker, stored, duplicates, dead-lettered (per reason), lost.

    python bench/faults.py          # every suite, the store hanging 20 s and down 60 s (~9 min)
    python bench/faults.py --short  # tests/test_faults_ledger.py alone, as in CI (~3 min)

Exits with pytest's status: a row is only printed for a test that passed its assertions
(0 lost and 0 duplicates among them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = (
    "tests/test_faults_ledger.py",
    "tests/test_faults.py",
    "tests/test_cluster.py::test_two_gateways_one_incident_and_outcome_per_entrapment_through_a_kill",
)
COLUMNS = (
    ("fault", "fault"),
    ("published", "published"),
    ("acknowledged", "acknowledged"),
    ("stored", "stored"),
    ("duplicates", "duplicates"),
    ("dead_lettered", "dead-lettered (reason)"),
    ("lost", "lost"),
    ("note", "note"),
)


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{n:,} {reason}" for reason, n in value.items()) or "0"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: list[dict[str, object]]) -> str:
    """The rows as a Markdown table, numbers with thousands separators."""
    lines = [
        "| " + " | ".join(title for _key, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row[key]) for key, _t in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--short", action="store_true", help="the ledger suite alone, its faults as in CI"
    )
    args = parser.parse_args()
    suites = SUITES[:1] if args.short else SUITES
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "ledger.jsonl"
        env = os.environ | {
            "GATEWAY_FAULTS_REPORT": str(rows_file),
            "GATEWAY_LEDGER_FULL": "0" if args.short else "1",
        }
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        status = subprocess.run([*pytest, *suites], cwd=ROOT, env=env).returncode
        text = rows_file.read_text() if rows_file.exists() else ""
    print(table([json.loads(line) for line in text.splitlines()]))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""`elevator-gateway registry import` end to end (subprocess, real SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from gateway.store import open_store


def _cli(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GATEWAY_STORE_URL=store)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_creates_and_updates(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'g.db'}"
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text(
        "elevator_id,site,district,maintenance_company,inspection_due,last_maintenance\n"
        "E-100,Block 1,North,Acme Lifts,2027-03-01,2026-11-20\n"
        "E-101,Block 1,North,Acme Lifts,,\n"
    )
    result = _cli("registry", "import", str(csv_file), store=store_url)
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout
    csv_file.write_text("elevator_id,district\nE-100,South\n")
    assert "1 updated" in _cli("registry", "import", str(csv_file), store=store_url).stdout
    store = open_store(store_url)
    assert store.get_elevator("E-100")["district"] == "South"
    assert store.get_elevator("E-101")["maintenance_company"] == "Acme Lifts"
    assert store.get_elevator("E-101")["inspection_due"] is None
    store.close()


def test_a_bad_row_stops_the_import_with_file_and_line(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'g.db'}"
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text("elevator_id,inspection_due\nE-1,2027-01-01\nE-2,next spring\n")
    result = _cli("registry", "import", str(csv_file), store=store_url)
    assert result.returncode == 2
    assert f"{csv_file}:3: inspection_due 'next spring'" in result.stderr
    store = open_store(store_url)
    assert store.get_elevator("E-1") is None  # nothing written
    store.close()
    csv_file.write_text('elevator_id,district\nE-1,"Wuhou\nWest"\n')
    result = _cli("registry", "import", str(csv_file), store=store_url)
    assert (
        result.returncode == 2 and "district 'Wuhou\\nWest' contains a line break" in result.stderr
    )
    csv_file.write_text("elevator_id,colour\nE-1,red\n")
    assert (
        "unknown columns colour"
        in _cli("registry", "import", str(csv_file), store=store_url).stderr
    )


def test_dates_round_trip(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    from datetime import UTC, datetime

    store.put_elevator("E-9", {"inspection_due": date(2027, 1, 2)}, datetime.now(UTC))
    assert store.get_elevator("E-9")["inspection_due"] == date(2027, 1, 2)
    store.close()

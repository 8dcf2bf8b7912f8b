"""Drills: started through the API (as the board does), run apart from a real alarm on the
same elevator, left out of the figures, and clearing the 6-month list; one held off-line
recorded with `elevator-gateway drill record`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gateway.api.auth import TOKEN_COOKIE
from gateway.app import Gateway
from gateway.store import open_store
from tests.people import TOKENS, call, clock, gw, register, url

__all__ = ["gw"]  # the fixture

ROOT = Path(__file__).resolve().parent.parent


def _missing(gw: Gateway, company: str) -> bool:
    r = call(gw, "GET", "/api/reports/drills-missing", role="regulator")
    assert r.status_code == 200, r.text
    return company in {row["maintenance_company"] for row in r.json()}


def test_a_drill_runs_apart_and_counts_for_the_duty_not_the_figures(
    gw: Gateway, prefix: str
) -> None:
    car, company = f"{prefix}-d", f"{prefix} Lifts"
    register(gw, car, maintenance_company=company)
    assert _missing(gw, company)
    real = call(
        gw,
        "POST",
        "/api/incidents",
        body={"elevator_id": car, "kind": "entrapment", "source": "phone"},
    )
    drill = call(
        gw,
        "POST",
        "/api/incidents",
        body={"elevator_id": car, "kind": "entrapment", "source": "other", "drill": True},
    )
    assert (real.status_code, drill.status_code) == (201, 201), drill.text
    real_id, drill_id = real.json()["id"], drill.json()["id"]
    assert real_id != drill_id  # neither joins the other
    assert (real.json()["drill"], drill.json()["drill"]) == (False, True)
    assert drill.json()["timeline"][0]["what"].startswith("drill opened by")

    # the crew reaches the real alarm in 5 minutes, the drill in 50 (past the limit)
    clock(gw).advance(300)
    for incident_id, crew in ((real_id, "c1"), (drill_id, "c2")):
        r = call(gw, "POST", f"/api/incidents/{incident_id}/dispatch", body={"crew_id": crew})
        assert r.status_code == 200, r.text
    r = call(gw, "POST", f"/api/incidents/{real_id}/arrival", body={"crew_id": "c1"})
    assert r.json()["sla"] == "met"
    clock(gw).advance(45 * 60)
    r = call(gw, "POST", f"/api/incidents/{drill_id}/arrival", body={"crew_id": "c2"})
    assert (r.json()["sla"], r.json()["drill"]) == ("breached", True)  # the clocks ran
    for incident_id in (real_id, drill_id):
        r = call(gw, "POST", f"/api/incidents/{incident_id}/close", body={"resolution": "rescued"})
        assert r.status_code == 200, r.text

    r = call(gw, "GET", "/api/metrics/response-times?group_by=elevator_id", role="regulator")
    [figures] = [g for g in r.json() if g["group"] == car]
    assert (figures["incidents"], figures["arrival_max_s"], figures["breaches"]) == (1, 300, 0)
    assert not _missing(gw, company)
    board = httpx.get(url(gw, "/board"), cookies={TOKEN_COOKIE: TOKENS["dispatcher"]}, timeout=10)
    assert board.status_code == 200 and 'id="drill"' in board.text  # the board starts drills


def test_a_drill_held_off_line_is_recorded_from_the_cli(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"PYTHONPATH": str(ROOT), "GATEWAY_STORE_URL": store_url}

    def drill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "drill", "record", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    refused = drill("--company", "Shu Lifts", "--at", future)
    assert refused.returncode == 2 and "future" in refused.stderr
    done = drill("--company", "Shu Lifts", "--at", "2026-03-01T10:00", "--note", "trapped car")
    assert done.returncode == 0, done.stderr
    store = open_store(store_url)
    [incident] = store.list_incidents()
    store.close()
    assert (incident.drill, incident.maintenance_company, incident.state) == (
        True,
        "Shu Lifts",
        "closed",
    )
    assert incident.opened_at == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

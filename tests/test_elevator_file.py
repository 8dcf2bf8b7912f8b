"""The elevator's file through the API: every kind of record in one timeline, in order, and
the same as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx

from gateway.api.auth import TOKEN_COOKIE
from gateway.app import Gateway
from gateway.store.records import Episode
from tests.people import TOKENS, call, clock, gw, register, url

__all__ = ["gw"]  # the fixture

MIN = timedelta(minutes=1)


def test_the_file_holds_every_kind_of_entry_in_order(gw: Gateway, prefix: str) -> None:
    car = f"{prefix}-f"
    register(gw, car, maintenance_company="Shu Lifts", address="1 Fu Road")
    t0 = clock(gw).now()
    gw.store.save_episodes(
        [
            Episode(car, "maintenance", t0, t0 + 40 * MIN, t0 + 40 * MIN),
            Episode(car, "alarm_test", t0 + 50 * MIN, t0 + 50 * MIN, t0 + 50 * MIN),
            Episode(car, "offline", t0 + 60 * MIN, None, t0 + 60 * MIN),
        ]
    )
    clock(gw).advance(2 * 3600)
    record = {"at": t0.isoformat(), "company": "Shu Lifts", "technician": "Li", "duration_min": 40}
    r = call(gw, "POST", f"/api/elevators/{car}/maintenance", role="admin", body=record)
    assert r.status_code == 201, r.text
    notice = {"elevator_id": car, "reason": "new drive", "posted_at": (t0 + 70 * MIN).isoformat()}
    assert call(gw, "POST", "/api/outage-notices", body=notice).status_code == 201
    for body in (
        {"kind": "entrapment", "source": "phone"},
        {"kind": "CITIZEN_REPORT", "source": "citizen"},
        {"kind": "entrapment", "source": "other", "drill": True},
    ):
        r = call(gw, "POST", "/api/incidents", body={"elevator_id": car, **body})
        assert r.status_code == 201, r.text
        clock(gw).advance(60)

    r = call(gw, "GET", f"/api/elevators/{car}/file", role="regulator")
    assert r.status_code == 200, r.text
    file = r.json()
    assert file["registry"]["address"] == "1 Fu Road"
    assert [(e["type"], e["flag"]) for e in file["entries"]] == [
        ("maintenance", None),
        ("maintenance_record", None),  # backed by the session
        ("alarm_test", None),
        ("offline", "ongoing"),
        ("outage_notice", None),
        ("incident", None),
        ("citizen_report", None),
        ("drill", None),
    ]
    rows = list(csv.DictReader(io.StringIO(call(gw, "GET", f"/api/elevators/{car}/file.csv").text)))
    assert [row["type"] for row in rows] == [e["type"] for e in file["entries"]]
    assert call(gw, "GET", f"/api/elevators/{prefix}-none/file").status_code == 404
    page = httpx.get(
        url(gw, f"/elevators/{car}"), cookies={TOKEN_COOKIE: TOKENS["dispatcher"]}, timeout=10
    )
    assert 'id="file"' in page.text and f"/api/elevators/{car}/file.csv" in page.text

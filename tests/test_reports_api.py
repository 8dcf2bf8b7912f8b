"""Report endpoints of a running gateway (real broker, real SQLite store): roles, JSON and
CSV, outage notices; and the store queries of episodes and notices."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.reports import SECTIONS, Episode, Notice
from gateway.store import open_store
from tests.test_api import call, gw  # noqa: F401  (gw is the running-gateway fixture)
from tests.test_reports import make_incident

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def test_store_keeps_episodes_and_notices(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    t0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    done = Episode("S1", "maintenance", t0, t0 + HOUR, t0 + HOUR)
    still = Episode("S1", "offline", t0 + 2 * HOUR, None, t0 + 2 * HOUR)
    store.save_episodes([done, still])
    assert store.episodes(t0 + HOUR, t0 + 3 * HOUR) == [done, still]  # overlapping the span
    assert store.episodes(t0 + 2 * HOUR, t0 + 3 * HOUR) == [still]
    assert store.episodes(t0 - HOUR, t0 - HOUR / 2) == []
    assert store.open_episodes() == [still]
    store.add_outage_notice(Notice("S1", t0, "parts", t0 + DAY), t0, "admin:x")
    assert store.outage_notices() == [Notice("S1", t0, "parts", t0 + DAY)]
    store.close()


def _rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_report_endpoints(gw: Gateway) -> None:  # noqa: F811
    now = datetime.now(UTC)
    store = gw.store
    for i, incident in enumerate(
        [
            make_incident("bl1", at=now - 200 * DAY, company="BL", breached=True),
            make_incident("bl2", at=now - 100 * DAY, company="BL", arrival=timedelta(hours=1)),
            make_incident("ok1", at=now - 10 * DAY, company="OK", arrival=timedelta(minutes=9)),
        ]
    ):
        assert store.insert_incident(incident, [], now), i
    body = {"maintenance_company": "OK", "use_unit": "Estate 7", "district": "North"}
    assert call(gw, "PUT", "/api/elevators/E1", role="admin", body=body).status_code == 201
    store.save_episodes([Episode("P1", "out_of_service", now - 30 * HOUR, None, now - HOUR)])

    r = call(gw, "GET", "/api/reports/blacklist-candidates", role="regulator")
    assert r.status_code == 200, r.text
    assert [(c["maintenance_company"], c["incident_ids"]) for c in r.json()] == [
        ("BL", ["bl1", "bl2"])
    ]
    for path in (
        "/api/reports/blacklist-candidates.csv",
        "/api/reports/blacklist-candidates?format=csv",
    ):
        [row] = _rows(call(gw, "GET", path, role="admin"))
        assert (row["maintenance_company"], row["breaches"]) == ("BL", "2")
        assert row["incident_ids"] == "bl1 bl2"

    # the contract's endpoint, grouped by the registry's use unit (an addition)
    r = call(gw, "GET", "/api/metrics/response-times?group_by=use_unit", role="regulator")
    assert [(g["group"], g["incidents"]) for g in r.json()] == [("Estate 7", 3)]

    # an outage of 30 h is listed until its notice is recorded
    outages = call(gw, "GET", "/api/reports/outages-without-notice", role="regulator").json()
    assert [(o["elevator_id"], o["reason"]) for o in outages] == [("P1", "out_of_service")]
    notice = {
        "elevator_id": "P1",
        "reason": "waiting for a new drive",
        "posted_at": now.isoformat(),
    }
    r = call(gw, "POST", "/api/outage-notices", role="dispatcher", body=notice)
    assert r.status_code == 201, r.text
    assert call(gw, "GET", "/api/reports/outages-without-notice", role="admin").json() == []
    assert any(a["action"] == "outage_notice" for a in store.audit_log())

    # a period in the configured zone
    since = (now - 150 * DAY).astimezone(UTC).date().isoformat()
    r = call(gw, "GET", f"/api/reports/breaches?since={since}", role="regulator")
    assert [b["incident_id"] for b in r.json()] == ["bl2"]

    everything = call(gw, "GET", "/api/reports", role="regulator").json()
    assert set(everything) == set(SECTIONS)
    assert [m["incidents"] for m in everything["monthly-trend"]] != []


def test_report_roles_and_errors(gw: Gateway) -> None:  # noqa: F811
    reads = ["/api/reports", *(f"/api/reports/{name}" for name in SECTIONS)]
    reads += ["/api/reports/inspections-due.csv", "/api/reports/causes?format=csv"]
    for path in reads:
        assert call(gw, "GET", path, role=None).status_code == 401, path
        assert call(gw, "GET", path, role="dispatcher").status_code == 403, path
        for role in ("regulator", "admin"):
            assert call(gw, "GET", path, role=role).status_code == 200, (path, role)
    notice = {"elevator_id": "N1", "reason": "repairs"}
    assert call(gw, "POST", "/api/outage-notices", role=None, body=notice).status_code == 401
    assert call(gw, "POST", "/api/outage-notices", role="regulator", body=notice).status_code == 403
    assert call(gw, "POST", "/api/outage-notices", role="admin", body=notice).status_code == 201

    assert call(gw, "GET", "/api/reports/nonsense", role="regulator").status_code == 404
    for query, field in (
        ("since=someday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-03-01&until=2026-02-01", "since"),
        ("timezone=Mars/Olympus", "timezone"),
        ("group_by=colour", "group_by"),
        ("format=pdf", "format"),
    ):
        r = call(gw, "GET", f"/api/reports/causes?{query}", role="regulator")
        assert r.status_code == 422 and field in r.json()["message"], (query, r.text)
    future = (datetime.now(UTC) + DAY).isoformat()
    bad = {"elevator_id": "N1", "reason": "x", "posted_at": future}
    r = call(gw, "POST", "/api/outage-notices", role="admin", body=bad)
    assert r.status_code == 422 and "posted_at" in r.json()["message"]
    r = call(gw, "POST", "/api/outage-notices", role="admin", body={"elevator_id": "N1"})
    assert r.status_code == 422 and "reason" in r.json()["message"]

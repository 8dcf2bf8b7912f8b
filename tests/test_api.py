"""The HTTP API of a running gateway (real broker, real SQLite store): roles, errors, actions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from tests.conftest import Subscriber, gateway_up, wait_for

PG = "postgresql"
TOKENS = {
    "dispatcher": "d-secret-token-0123456789",
    "regulator": "r-secret-token-0123456789",
    "admin": "a-secret-token-0123456789",
}


@pytest.fixture
def gw(gateway_settings, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway on SQLite, or on PostgreSQL for tests parametrised with `indirect=["gw"]`."""
    store = (
        {"store_url": request.getfixturevalue("pg_url")}
        if getattr(request, "param", None) == PG
        else {}
    )
    settings = gateway_settings(
        tsdb_url="", tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()), **store
    )
    with Gateway(settings) as gateway:
        wait_for(lambda: gateway_up(gateway))
        yield gateway


def _url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.settings.http_port}{path}"


def call(
    gw: Gateway, method: str, path: str, role: str | None = "dispatcher", body: Any = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    return httpx.request(method, _url(gw, path), headers=headers, json=body, timeout=10)


def report(gw: Gateway, elevator_id: str, **extra: Any) -> httpx.Response:
    body = {"elevator_id": elevator_id, "kind": "entrapment", "source": "phone"} | extra
    return call(gw, "POST", "/api/incidents", body=body)


ENDPOINTS = [
    # method, path, body, roles allowed
    ("GET", "/api/incidents", None, {"dispatcher", "regulator", "admin"}),
    ("GET", "/api/incidents/{id}", None, {"dispatcher", "regulator", "admin"}),
    (
        "POST",
        "/api/incidents",
        {"elevator_id": "R1", "kind": "entrapment", "source": "phone"},
        {"dispatcher"},
    ),
    ("POST", "/api/incidents/{id}/acknowledge", {"by": "ana"}, {"dispatcher"}),
    ("POST", "/api/incidents/{id}/dispatch", {"crew_id": "c1"}, {"dispatcher"}),
    ("POST", "/api/incidents/{id}/arrival", {"crew_id": "c1"}, {"dispatcher"}),
    ("POST", "/api/incidents/{id}/release", {}, {"dispatcher"}),
    ("POST", "/api/incidents/{id}/close", {"resolution": "rescued"}, {"dispatcher"}),
    ("GET", "/api/elevators/R1", None, {"dispatcher", "regulator", "admin"}),
    ("PUT", "/api/elevators/R1", {"district": "North"}, {"admin"}),
    ("GET", "/api/metrics/response-times", None, {"regulator", "admin"}),
]


def test_each_role_against_each_endpoint(gw: Gateway) -> None:
    for n, (method, path, body, allowed) in enumerate(ENDPOINTS):
        incident_id = report(gw, "R1").json()["id"]
        url = path.format(id=incident_id)
        assert call(gw, method, url, role=None, body=body).status_code == 401, url
        # From a client of its own each time: wrong tokens are limited per client.
        client = {"X-Forwarded-For": f"198.51.100.{n}"}
        bad = httpx.request(
            method, _url(gw, url), json=body, headers={"Authorization": "Bearer nope"} | client
        )
        assert bad.status_code == 401, url
        for role in TOKENS:
            status = call(gw, method, url, role=role, body=body).status_code
            if role in allowed:
                assert status in (200, 201), (method, url, role, status)
            else:
                assert status == 403, (method, url, role, status)
    assert httpx.get(_url(gw, "/api/health")).json()["store"] is True
    assert "gateway_frames_rejected_total" in httpx.get(_url(gw, "/metrics")).text
    assert httpx.get(_url(gw, "/docs")).status_code == 303  # to the sign-in page
    assert call(gw, "GET", "/docs").status_code == 200


def test_validation_errors_name_the_field(gw: Gateway) -> None:
    incident_id = report(gw, "V1").json()["id"]
    cases = [
        ("/api/incidents", {"kind": "entrapment", "source": "phone"}, "elevator_id"),
        ("/api/incidents", {"elevator_id": "V1", "kind": "entrapment", "source": "fax"}, "source"),
        (
            "/api/incidents",
            {"elevator_id": "bad id", "kind": "entrapment", "source": "phone"},
            "elevator_id",
        ),
        (f"/api/incidents/{incident_id}/dispatch", {}, "crew_id"),
        (f"/api/incidents/{incident_id}/close", {"resolution": "lost"}, "resolution"),
        (f"/api/incidents/{incident_id}/arrival", {"crew_id": "c", "at": "not a time"}, "at"),
        (
            f"/api/incidents/{incident_id}/arrival",
            {"crew_id": "c", "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            "at",
        ),
        (  # before the incident opened
            f"/api/incidents/{incident_id}/arrival",
            {"crew_id": "c", "at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
            "at",
        ),
    ]
    for path, body, field in cases:
        r = call(gw, "POST", path, body=body)
        assert r.status_code == 422, (path, body, r.text)
        assert field in r.json()["message"], r.json()
    r = call(gw, "PUT", "/api/elevators/V1", role="admin", body={"inspection_due": "someday"})
    assert r.status_code == 422 and "inspection_due" in r.json()["message"]
    # A line break cannot be carried by a time-series tag: refused at input.
    r = call(gw, "PUT", "/api/elevators/V1", role="admin", body={"district": "Wuhou\nWest"})
    assert r.status_code == 422 and "district" in r.json()["message"]


def test_unknown_ids_are_404(gw: Gateway) -> None:
    assert call(gw, "GET", "/api/incidents/INC-nope").status_code == 404
    assert (
        call(gw, "POST", "/api/incidents/INC-nope/acknowledge", body={"by": "a"}).status_code == 404
    )
    assert call(gw, "GET", "/api/elevators/NEVER-SEEN").status_code == 404


@pytest.mark.parametrize("gw", ["sqlite", PG], indirect=True)
def test_phone_report_lifecycle_on_the_api_and_the_retained_topic(gw: Gateway, broker) -> None:
    alerts = Subscriber(broker.url, "dispatch/alerts")
    assert (
        call(
            gw,
            "PUT",
            "/api/elevators/L1",
            role="admin",
            body={"district": "North", "maintenance_company": "Acme Lifts", "site": "Block 9"},
        ).status_code
        == 201
    )
    first = report(gw, "L1", note="caller on line 3")
    assert first.status_code == 201
    incident = first.json()
    opened = datetime.fromisoformat(incident["opened_at"])
    assert datetime.fromisoformat(incident["deadline_at"]) - opened == timedelta(seconds=1800)
    assert datetime.fromisoformat(incident["ack_deadline_at"]) - opened == timedelta(seconds=180)
    assert incident["maintenance_company"] == "Acme Lifts" and incident["source"] == "phone"
    iid = incident["id"]

    earlier = (opened - timedelta(minutes=2)).isoformat()
    joined = report(gw, "L1", source="property", reported_at=earlier)
    assert joined.status_code == 200 and joined.json()["id"] == iid
    assert joined.json()["opened_at"] == earlier.replace("+00:00", "Z")

    steps = [
        ("acknowledge", {"by": "ana"}, "acknowledged"),
        ("dispatch", {"crew_id": "crew-7", "maintenance_company": "Acme Lifts"}, "dispatched"),
        ("arrival", {"crew_id": "crew-7"}, "arrived"),
        ("release", {}, "released"),
        ("close", {"resolution": "rescued", "note": "all out"}, "closed"),
    ]
    topic = f"dispatch/incidents/{iid}"
    retained = Subscriber(broker.url, topic)
    for action, body, expected in steps:
        r = call(gw, "POST", f"/api/incidents/{iid}/{action}", body=body)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == expected
        assert call(gw, "GET", f"/api/incidents/{iid}").json()["state"] == expected
        wait_for(
            lambda e=expected: any(p and json.loads(p)["state"] == e for _t, p in retained.messages)
        )
    final = call(gw, "GET", f"/api/incidents/{iid}").json()
    assert final["sla"] == "met" and final["arrival_evidence"] == "reported"
    assert final["crew_id"] == "crew-7" and final["resolution"] == "rescued"
    assert 120 <= final["arrival_s"] < 180
    assert [e["what"].split()[0] for e in final["timeline"]] == [
        "opened",
        "also",
        "acknowledged",
        "crew",
        "arrival",
        "released",
        "closed:",
    ]
    # Closed: the retained message is removed (an empty retained payload follows the final state).
    wait_for(lambda: retained.messages and retained.messages[-1][1] == b"")
    late = Subscriber(broker.url, topic)
    assert late.messages == []
    assert (
        call(gw, "POST", f"/api/incidents/{iid}/acknowledge", body={"by": "x"}).status_code == 409
    )

    wait_for(lambda: any(json.loads(p)["incident_id"] == iid for _t, p in alerts.messages))
    opened_alert = next(
        json.loads(p) for _t, p in alerts.messages if json.loads(p)["incident_id"] == iid
    )
    assert set(opened_alert) >= {
        "incident_id",
        "elevator_id",
        "kind",
        "severity",
        "rule",
        "at",
        "deadline_at",
    }
    assert (opened_alert["elevator_id"], opened_alert["severity"]) == ("L1", "critical")

    actions = [a["action"] for a in gw.store.audit_log()]
    assert {
        "registry_put",
        "report",
        "acknowledge",
        "dispatch",
        "arrival",
        "release",
        "close",
    } <= set(actions)
    assert all("secret" not in a["body"] and len(a["token_id"]) == 8 for a in gw.store.audit_log())

    elevator = call(gw, "GET", "/api/elevators/L1", role="regulator").json()
    assert elevator["district"] == "North" and elevator["open_incident"] is None
    figures = call(
        gw, "GET", "/api/metrics/response-times?group_by=maintenance_company", role="regulator"
    ).json()
    assert figures[0]["group"] == "Acme Lifts" and figures[0]["within_limit"] == 1
    for sub in (alerts, retained, late):
        sub.close()


def test_district_limits_and_breach_alert(gateway_settings, broker) -> None:
    settings = gateway_settings(
        tsdb_url="",
        tokens=f"dispatcher:{TOKENS['dispatcher']},admin:{TOKENS['admin']}",
        arrival_limit_s=2,
        arrival_warning_s=1,
        ack_limit_s=60,
        district_arrival_limits={"Rural": 3},
    )
    alerts = Subscriber(broker.url, "dispatch/alerts")
    with Gateway(settings) as gw:
        wait_for(lambda: gateway_up(gw))
        call(gw, "PUT", "/api/elevators/B2", role="admin", body={"district": "Rural"})
        urban = report(gw, "B1").json()
        rural = report(gw, "B2").json()
        assert (
            datetime.fromisoformat(rural["deadline_at"])
            - datetime.fromisoformat(rural["opened_at"])
        ) == timedelta(seconds=3)
        for incident in (urban, rural):
            wait_for(
                lambda i=incident: (
                    call(gw, "GET", f"/api/incidents/{i['id']}").json()["sla"] == "breached"
                ),
                timeout=10,
            )

        def kinds() -> list[tuple[str, str, str]]:
            found = [json.loads(p) for _t, p in alerts.messages]
            return [(a["incident_id"], a["type"], a["severity"]) for a in found]

        wait_for(
            lambda: (
                (urban["id"], "breach", "critical") in kinds()
                and (rural["id"], "breach", "critical") in kinds()
            )
        )
        assert [k for k in kinds() if k[0] == urban["id"]].count(
            (urban["id"], "breach", "critical")
        ) == 1
        assert (urban["id"], "warning", "critical") in kinds()
    alerts.close()


def test_times_come_back_in_utc_whatever_offset_went_in(gw: Gateway) -> None:
    local = (datetime.now(UTC) - timedelta(minutes=5)).astimezone(timezone(timedelta(hours=8)))
    incident = report(gw, "U1", reported_at=local.isoformat()).json()
    assert incident["opened_at"].endswith("Z")
    assert datetime.fromisoformat(incident["opened_at"]) == local
    assert all(e["at"].endswith("Z") for e in incident["timeline"])

"""The public elevator page behind the safety tag's QR code, and citizen reports, on a running
gateway (real Mosquitto and SQLite), over HTTP and in headless Chromium at a phone's size."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, expect
from typer.testing import CliRunner

from gateway.app import Gateway
from gateway.citizen import NOTE_MAX_CHARS, REPORTS_PER_MINUTE
from gateway.cli import app
from gateway.store import open_store
from gateway.web.public import FACTS_TTL_S, MAX_FORM_BYTES
from gateway.web.public_strings import PUBLIC_STRINGS
from tests.conftest import Device, status_frame, wait_for
from tests.people import ARRIVAL_LIMIT_S, TOKENS, call, clock, gw, incidents_of, register, url
from tests.test_web import ARTIFACTS, browser, playwright, screenshot

__all__ = ["browser", "gw", "playwright"]  # fixtures

EN, ZH = PUBLIC_STRINGS["en"], PUBLIC_STRINGS["zh"]
PHONE = {"width": 390, "height": 844}
RECORD = {
    "address": "12 Jinli Road, Building 3, Unit 2",
    "use_unit": "Jinli Garden Property Management",
    "maintenance_company": "Shu Lifts",
    "maintenance_phone": "028-8888 1234",
    "site": "Jinli Garden",
    "district": "Wuhou",
}


def page_of(gw: Gateway, elevator_id: str, lang: str = "en") -> httpx.Response:
    return httpx.get(url(gw, f"/e/{elevator_id}"), headers={"Accept-Language": lang}, timeout=10)


def send(gw: Gateway, elevator_id: str, client: str = "203.0.113.9", **form: Any) -> httpx.Response:
    """A citizen's form post, from `client` (the address a reverse proxy would forward)."""
    return httpx.post(
        url(gw, f"/e/{elevator_id}/report"),
        data=form,
        headers={"X-Forwarded-For": client, "Accept-Language": "en"},
        timeout=10,
    )


def test_page_shows_the_elevators_safety_facts_and_nothing_private(
    gw: Gateway, device: Device, prefix: str
) -> None:
    car, neighbour = f"{prefix}-pub", f"{prefix}-next"
    today = clock(gw).now().date()
    register(
        gw, car, **RECORD, last_maintenance=(today - timedelta(days=3)).isoformat(),
        inspection_due="2027-05-31",
    )  # fmt: skip
    register(gw, neighbour, address="99 Other Street", maintenance_company="Other Lifts")
    device.publish(f"elevators/{car}/status", status_frame(car, 0))
    wait_for(lambda: gw.incidents.last_frame(car))

    html = page_of(gw, car).text
    for value in (car, *(RECORD[k] for k in ("address", "use_unit", "maintenance_company"))):
        assert value in html
    assert 'href="tel:028-88881234"' in html
    assert (today - timedelta(days=3)).isoformat() in html and EN["maintenance_ok"] in html
    assert "2027-05-31" in html
    assert EN["status_in_service"] in html

    # An incident handled by people: the page says so, without their ids or names.
    body = {"elevator_id": car, "kind": "entrapment", "source": "phone"}
    incident = call(gw, "POST", "/api/incidents", body=body).json()
    path = f"/api/incidents/{incident['id']}"
    call(gw, "POST", f"{path}/acknowledge", body={"by": "Dispatcher Wang Fang"})
    call(gw, "POST", f"{path}/dispatch", body={"crew_id": "CREW-7731"})
    clock(gw).advance(FACTS_TTL_S)  # what the page says may be that old
    response = page_of(gw, car)
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    html = response.text
    assert EN["status_incident"] in html
    private = [
        "Wang Fang", "CREW-7731", incident["id"], *TOKENS.values(), "99 Other Street",
        "Other Lifts", neighbour, "<script",
    ]  # fmt: skip
    assert [p for p in private if p in html] == []

    assert page_of(gw, f"{prefix}-nope").status_code == 404
    assert page_of(gw, "not an id").status_code == 404
    zh = page_of(gw, car, lang="zh-CN").text
    assert ZH["title"] in zh and ZH["status_incident"] in zh


def test_page_shows_the_outage_notice(gw: Gateway, device: Device, prefix: str) -> None:
    car = f"{prefix}-out"
    register(gw, car, **RECORD)
    device.publish(f"elevators/{car}/status", status_frame(car, 0, mode="out_of_service"))
    wait_for(lambda: gw.incidents.last_frame(car))
    returns = clock(gw).now() + timedelta(days=3)
    notice = {
        "elevator_id": car,
        "reason": "Traction machine being replaced",
        "expected_return_at": returns.isoformat(),
    }
    assert call(gw, "POST", "/api/outage-notices", "admin", notice).status_code == 201
    html = page_of(gw, car).text
    assert EN["status_out_of_service"] in html
    assert "Traction machine being replaced" in html
    local_return = returns.astimezone(ZoneInfo(gw.settings.timezone)).strftime("%Y-%m-%d %H:%M")
    assert f'<span id="notice-return">{local_return}</span>' in html


def test_report_form_refuses_bad_input_clearly_and_limits_each_client(
    gw: Gateway, prefix: str
) -> None:
    car = f"{prefix}-form"
    register(gw, car, **RECORD)
    cases = [
        ({"problem": "flooded"}, 422, EN["error_problem"]),
        ({"note": "no problem chosen"}, 422, EN["error_problem"]),
        (
            {"problem": "other", "note": "x" * (NOTE_MAX_CHARS + 1)},
            422,
            EN["error_note"].format(max=NOTE_MAX_CHARS),
        ),
        ({"problem": "other", "note": "x" * MAX_FORM_BYTES}, 413, EN["error_too_large"]),
    ]
    for form, status, message in cases:
        response = send(gw, car, client="198.51.100.1", **form)
        assert (response.status_code, message in response.text) == (status, True), form
    raw = httpx.post(
        url(gw, f"/e/{car}/report"),
        content=b"problem=trapped&note=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "en",
                 "X-Forwarded-For": "198.51.100.1"},
    )  # fmt: skip
    assert raw.status_code == 422 and EN["error_malformed"] in raw.text
    assert send(gw, f"{prefix}-nope", client="198.51.100.1", problem="other").status_code == 404
    assert incidents_of(gw, car) == []

    # Twenty reports a minute per client; the next one waits. Others are not affected.
    statuses = [
        send(gw, car, client="198.51.100.2", problem="other").status_code
        for _ in range(REPORTS_PER_MINUTE + 1)
    ]
    assert statuses == [303] * REPORTS_PER_MINUTE + [429]
    refused = send(gw, car, client="198.51.100.2", problem="other")
    assert refused.status_code == 429 and EN["error_rate"] in refused.text
    assert refused.headers["retry-after"] == "60"
    assert send(gw, car, client="198.51.100.3", problem="other").status_code == 303
    clock(gw).advance(60 / REPORTS_PER_MINUTE)  # one report's worth of refill
    assert send(gw, car, client="198.51.100.2", problem="other").status_code == 303


def test_a_crowd_of_citizen_reports_makes_one_incident(gw: Gateway, prefix: str) -> None:
    car, other = f"{prefix}-crowd", f"{prefix}-tick"
    for elevator_id in (car, other):
        register(gw, elevator_id, **RECORD)
    opened_at = clock(gw).now()
    crowd = ["trapped", "stopped", "trapped", "unsafe", "other", "trapped"] * 2
    for n, problem in enumerate(crowd):
        assert send(gw, car, client=f"192.0.2.{n}", problem=problem).status_code == 303
        clock(gw).advance(5)
    [incident] = incidents_of(gw, car)
    assert (incident["kind"], incident["source"]) == ("entrapment", "citizen")
    assert incident["severity"] == "critical"
    assert incident["deadline_at"] == (
        (opened_at + timedelta(seconds=ARRIVAL_LIMIT_S)).isoformat().replace("+00:00", "Z")
    )
    assert [e["by"] for e in incident["timeline"]] == ["public page"]

    # Not trapped: a ticket for the maintenance company, no arrival clock; a `trapped` after
    # it is an escalation and opens the entrapment incident at once.
    assert send(gw, other, problem="stopped", note="Stuck on 5F\x07, doors shut").status_code == 303
    [ticket] = incidents_of(gw, other)
    assert (ticket["kind"], ticket["incident_class"], ticket["source"], ticket["severity"]) == (
        "CITIZEN_REPORT", "fault", "citizen", "minor",
    )  # fmt: skip
    assert ticket["timeline"][0]["what"].endswith("stopped: Stuck on 5F , doors shut")
    assert send(gw, other, problem="trapped").status_code == 303
    # One episode: the ticket becomes the entrapment's companion, listed inside it.
    [entrapment] = incidents_of(gw, other)
    assert entrapment["kind"] == "entrapment"
    everything = call(gw, "GET", f"/api/incidents?state=all&elevator_id={other}&include=children")
    assert {i["kind"]: i["parent_id"] for i in everything.json()} == {
        "CITIZEN_REPORT": entrapment["id"], "entrapment": None,
    }  # fmt: skip


def test_public_page_on_a_phone_in_chromium(gw: Gateway, browser: Browser, prefix: str) -> None:
    car = f"{prefix}-mob"
    register(gw, car, **RECORD, last_maintenance="2020-01-01", inspection_due="2027-05-31")
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    try:
        page = context.new_page()
        page.goto(url(gw, f"/e/{car}"))
        expect(page.locator("h1")).to_have_text(ZH["title"])
        expect(page.locator("#status")).to_have_text(ZH["status_no_data"])
        expect(page.locator("#last-maintenance .badge")).to_have_text(ZH["maintenance_late"])
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.evaluate("document.scripts.length") == 0
        screenshot(page, "public-page-zh")

        page.click("#lang-switch")
        expect(page.locator("h1")).to_have_text(EN["title"])
        page.check('input[value="trapped"]')
        page.fill("#note", "Lift stuck between 3F and 4F, two people inside")
        page.click("#send")
        expect(page.locator("#sent")).to_have_text(EN["sent"])
        expect(page.locator("#status")).to_have_text(EN["status_incident"])
        screenshot(page, "public-page-reported")
    finally:
        context.close()
    [incident] = incidents_of(gw, car)
    assert (incident["kind"], incident["source"]) == ("entrapment", "citizen")


def test_qr_codes_decode_to_each_elevators_public_page(
    tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = f"sqlite:///{tmp_path / 'registry.db'}"
    store = open_store(store_url)
    elevator_ids = ["510100-2019-0042", "QR_B7"]
    for elevator_id in elevator_ids:
        store.put_elevator(elevator_id, {"address": "1 QR Road"}, datetime.now(UTC))
    store.close()
    monkeypatch.setenv("GATEWAY_STORE_URL", store_url)
    monkeypatch.delenv("GATEWAY_PUBLIC_BASE_URL", raising=False)
    out = tmp_path / "tags"
    refused = CliRunner().invoke(app, ["registry", "qr", "--out", str(out)])
    assert refused.exit_code == 2 and "public_base_url" in refused.output

    base = "https://lifts.example.gov.cn/safety/"
    monkeypatch.setenv("GATEWAY_PUBLIC_BASE_URL", base)
    made = CliRunner().invoke(app, ["registry", "qr", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{e}.svg" for e in elevator_ids)
    page = browser.new_page()
    try:
        for elevator_id in elevator_ids:
            svg = out / f"{elevator_id}.svg"
            label = ET.parse(svg).getroot().find("{http://www.w3.org/2000/svg}text")
            assert label is not None and label.text == elevator_id
            # Printed as a person would see it: rendered by a browser, then scanned.
            page.goto(svg.as_uri())
            png = page.locator("svg").first.screenshot()
            [code] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
            assert code.text == f"https://lifts.example.gov.cn/safety/e/{elevator_id}"
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "qr-tag.png").write_bytes(png)
    finally:
        page.close()

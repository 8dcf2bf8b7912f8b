"""The dispatch console in real headless Chromium (Debian's `chromium`, driven by Playwright)
against a running gateway on real Mosquitto and SQLite.

The gateway runs on a scaled clock (10x) so a rule-detected entrapment opens within seconds;
every time asserted is the gateway's own. Screenshots of each page go to `test-artifacts/`.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from gateway.api import events
from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.web.pages import LANG_COOKIE
from gateway.web.strings import STRINGS
from tests.conftest import Device, free_port, gateway_up, status_frame, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TOKENS = {
    "dispatcher": "d-web-token-0123456789abc",
    "regulator": "r-web-token-0123456789abc",
    "admin": "a-web-token-0123456789abc",
}
SPEED = 10.0
TIMEOUT_MS = 20_000
TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}
EN, ZH = STRINGS["en"], STRINGS["zh"]

expect.set_options(timeout=TIMEOUT_MS)


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: .ci/run installs Debian's chromium"
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        viewport={"width": 1600, "height": 1000}, locale="en-US", accept_downloads=True
    )
    yield ctx
    ctx.close()


@pytest.fixture
def gw(gateway_settings) -> Iterator[Gateway]:
    settings = gateway_settings(
        tsdb_url="",
        tick_interval_s=0.02,
        tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()),
    )
    with Gateway(settings, ScaledClock(SPEED)) as gateway:
        assert gateway.session.wait_connected(10)
        wait_for(lambda: gateway_up(gateway))
        yield gateway


def url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.settings.http_port}{path}"


def call(gw: Gateway, method: str, path: str, role: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    response = httpx.request(method, url(gw, path), headers=headers, json=body, timeout=10)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response


def register(gw: Gateway, elevator_id: str, **record: Any) -> None:
    call(gw, "PUT", f"/api/elevators/{elevator_id}", "admin", record)


def phone_report(gw: Gateway, elevator_id: str, minutes_ago: float) -> dict[str, Any]:
    at = gw.clock.now() - timedelta(minutes=minutes_ago)
    body = {
        "elevator_id": elevator_id,
        "kind": "entrapment",
        "source": "phone",
        "reported_at": at.isoformat(),
    }
    return call(gw, "POST", "/api/incidents", "dispatcher", body).json()


def login(page: Page, gw: Gateway, role: str, path: str) -> None:
    page.goto(url(gw, path))
    expect(page).to_have_url(url(gw, f"/login?next={path}"))
    page.fill("#token", TOKENS[role])
    page.click("#login")
    expect(page).to_have_url(url(gw, path))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


class Car:
    """A car that keeps reporting the same status every half second (5 s of gateway time),
    as a real controller does, so it is trapped, not silent."""

    def __init__(self, device: Device, elevator_id: str, first_seq: int = 0, **fields: Any) -> None:
        self._device, self._id, self._fields = device, elevator_id, fields
        self._seq = first_seq
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Car:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = status_frame(self._id, self._seq, **self._fields)
            self._device.publish(f"elevators/{self._id}/status", frame)
            self._seq += 1
            self._stop.wait(0.5)


def card(page: Page, elevator_id: str, kind: str = "entrapment") -> Locator:
    return page.locator(
        f'.card[data-kind="{kind}"]', has=page.locator(f'a.elevator:text-is("{elevator_id}")')
    )


def entrapments_in_order(page: Page) -> list[str]:
    return page.locator('.card[data-kind="entrapment"] a.elevator').all_inner_texts()


# -- the dispatch board ---------------------------------------------------------------------
def test_dispatcher_sees_a_trapped_passenger_appear_and_takes_it_to_arrival(
    gw: Gateway, context: BrowserContext, device: Device, prefix: str
) -> None:
    trapped, warned, late = f"{prefix}-trap", f"{prefix}-warn", f"{prefix}-late"
    register(
        gw, trapped, address="12 Jinli Road, Unit 3", site="Jinli Garden",
        district="Wuhou", maintenance_company="Shu Lifts",
    )  # fmt: skip
    page = context.new_page()
    login(page, gw, "dispatcher", "/board")
    expect(page.locator("#link")).to_have_text(EN["connected"])
    expect(page.locator("#empty")).to_be_visible()
    page.click("#sound")
    page.fill("#operator", "Wang")
    page.evaluate("window.notReloaded = true")

    # Two phone reports already running: one past the warning, one past the deadline.
    phone_report(gw, warned, minutes_ago=25)
    phone_report(gw, late, minutes_ago=35)
    expect(card(page, late).locator(".clock")).to_have_class("clock breached")
    expect(card(page, warned).locator(".clock")).to_have_class("clock warning")

    with Car(device, trapped, **TRAPPED):
        trapped_card = card(page, trapped)
        expect(trapped_card).to_be_visible()
        assert page.evaluate("window.notReloaded") is True
        expect(trapped_card.locator(".address")).to_have_text("12 Jinli Road, Unit 3")
        expect(trapped_card.locator(".company")).to_have_text("Shu Lifts")
        expect(trapped_card.locator(".state")).to_have_text(EN["state_open"])
        expect(trapped_card).to_have_class("card flash")
        expect(trapped_card.locator(".clock")).to_have_class("clock ok")
        assert int(page.get_attribute("body", "data-beeps") or 0) >= 1
        # Sorted by time left: overdue first, then the warned one, then the new one.
        assert entrapments_in_order(page) == [late, warned, trapped]
        # The countdown runs (on the gateway's clock).
        first = trapped_card.locator(".clock-value").inner_text()
        expect(trapped_card.locator(".clock-value")).not_to_have_text(first)
        screenshot(page, "board-new-entrapment")

        trapped_card.locator('button[data-action="acknowledge"]').click()
        expect(trapped_card.locator(".state")).to_have_text(EN["state_acknowledged"])
        expect(trapped_card).not_to_have_class("card flash")

        # Keyboard only: type the crew id and press Enter to dispatch.
        crew = trapped_card.locator(".crew-input")
        crew.focus()
        page.keyboard.type("C-7")
        page.keyboard.press("Enter")
        expect(trapped_card.locator(".state")).to_have_text(EN["state_dispatched"])
        expect(trapped_card.locator(".crew")).to_have_text("C-7")

        trapped_card.locator('button[data-action="arrival"]').click()
        expect(trapped_card.locator(".state")).to_have_text(EN["state_arrived"])
        expect(trapped_card.locator(".clock")).to_have_class("clock stopped met")
        expect(trapped_card.locator(".clock-label")).to_have_text(EN["arrived_after"])
        stopped = trapped_card.locator(".clock-value").inner_text()
        page.wait_for_timeout(1500)  # several countdown redraws: a stopped clock stays put
        expect(trapped_card.locator(".clock-value")).to_have_text(stopped)
        # A stopped clock sorts after the running ones.
        assert entrapments_in_order(page) == [late, warned, trapped]
        screenshot(page, "board-after-arrival")

    [incident] = [
        i
        for i in call(gw, "GET", f"/api/incidents?elevator_id={trapped}", "dispatcher").json()
        if i["kind"] == "entrapment"
    ]
    assert (incident["state"], incident["crew_id"], incident["sla"]) == ("arrived", "C-7", "met")
    assert incident["acknowledged_by"] == "Wang"
    assert incident["source"] == "telemetry"

    # Release with the keyboard, close with a resolution: the card leaves the board.
    release = trapped_card.locator('button[data-action="release"]')
    release.focus()
    page.keyboard.press("Enter")
    expect(trapped_card.locator(".state")).to_have_text(EN["state_released"])
    trapped_card.locator(".resolution").select_option("rescued")
    trapped_card.locator('button[data-action="close"]').click()
    expect(trapped_card).to_have_count(0)
    closed = call(gw, "GET", f"/api/incidents/{incident['id']}", "dispatcher").json()
    assert (closed["state"], closed["resolution"]) == ("closed", "rescued")


def test_the_board_follows_the_language_switch_and_remembers_it(
    gw: Gateway, context: BrowserContext, prefix: str
) -> None:
    register(gw, f"{prefix}-zh", address="锦里路 12 号 3 单元", maintenance_company="蜀梯维保")
    phone_report(gw, f"{prefix}-zh", minutes_ago=3)
    page = context.new_page()
    login(page, gw, "dispatcher", "/board")
    expect(page.locator("nav")).to_contain_text(EN["nav_board"])
    page.click("#lang-switch")
    expect(page.locator("nav")).to_contain_text(ZH["nav_board"])
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(card(page, f"{prefix}-zh").locator(".state")).to_have_text(ZH["state_open"])
    expect(card(page, f"{prefix}-zh").locator(".clock-label")).to_have_text(ZH["time_left"])
    assert {c["name"]: c["value"] for c in context.cookies()}[LANG_COOKIE] == "zh"
    page.reload()
    expect(page.locator("nav")).to_contain_text(ZH["nav_board"])
    screenshot(page, "board-zh")
    page.click("#lang-switch")
    expect(page.locator("nav")).to_contain_text(EN["nav_board"])


def test_the_board_names_a_webhook_that_keeps_failing(
    gateway_settings, context: BrowserContext, prefix: str
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every post fails
    settings = gateway_settings(
        tsdb_url="",
        tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()),
        alert_webhooks=[refused],
    )
    with Gateway(settings, ScaledClock(SPEED)) as gateway:
        wait_for(lambda: gateway_up(gateway))
        page = context.new_page()
        login(page, gateway, "dispatcher", "/board")
        expect(page.locator("#webhooks")).to_be_hidden()
        phone_report(gateway, f"{prefix}-hook", minutes_ago=1)
        # Polled every 15 s.
        expect(page.locator("#webhooks")).to_contain_text(
            "Webhook alert:127.0.0.1 failing since", timeout=20_000
        )


def test_labels_exist_in_both_languages() -> None:
    assert STRINGS["en"].keys() == STRINGS["zh"].keys()


# -- roles, the cookie and CSRF -------------------------------------------------------------
def test_regulator_sees_no_action_buttons_and_downloads_figures_as_csv(
    gw: Gateway, context: BrowserContext, prefix: str
) -> None:
    done, waiting = f"{prefix}-done", f"{prefix}-wait"
    for elevator_id in (done, waiting):
        register(gw, elevator_id, district="Wuhou", maintenance_company="Shu Lifts")
    incident = phone_report(gw, done, minutes_ago=12)
    path = f"/api/incidents/{incident['id']}"
    call(gw, "POST", f"{path}/dispatch", "dispatcher", {"crew_id": "C-1"})
    call(gw, "POST", f"{path}/arrival", "dispatcher", {"crew_id": "C-1"})
    open_one = phone_report(gw, waiting, minutes_ago=2)

    page = context.new_page()
    login(page, gw, "regulator", "/board")
    expect(card(page, waiting)).to_be_visible()
    expect(card(page, done)).to_be_visible()
    expect(page.locator("main button")).to_have_count(0)
    expect(page.locator("#operator")).to_have_count(0)
    screenshot(page, "board-regulator")
    # The API refuses a regulator's action even from the console itself.
    refused = page.request.post(
        url(gw, f"/api/incidents/{open_one['id']}/acknowledge"),
        data={"by": "regulator"},
        headers={"X-Gateway-Console": "1"},
    )
    assert refused.status == 403

    # The regulator page is the bulletin, as `elevator-gateway report --format html` has it.
    page.goto(url(gw, "/regulator"))
    row = page.locator("#rank-companies tbody tr", has_text="Shu Lifts")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text("2")  # elevators
    expect(row.locator("td").nth(3)).to_have_text("2")  # entrapments
    expect(row.locator("td").nth(4)).to_have_text("0")  # breaches
    expect(page.locator('[data-figure="entrapments"] .value')).to_have_text("2")
    expect(page.locator("#chart-arrival-histogram rect.bar")).to_have_count(13)
    expect(page.locator("#limit-line")).to_have_count(1)
    expect(page.locator('.list[data-section="inspections-due"] table')).to_be_visible()
    expect(page.locator("main button.act")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    screenshot(page, "regulator")

    with page.expect_download() as download:
        page.click('a.csv[data-section="response-times"]')
    saved = ARTIFACTS / "response-times.csv"
    download.value.save_as(saved)
    [header, *rows] = list(csv.reader(io.StringIO(saved.read_text())))
    assert header[:3] == ["group", "incidents", "arrived"]
    assert rows[0][:3] == ["Shu Lifts", "2", "1"]
    page.emulate_media(media="print")  # the page prints as the bulletin alone
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.locator("#downloads")).to_be_hidden()
    expect(page.locator("article.bulletin")).to_be_visible()
    page.goto(url(gw, "/regulator?since=soon"))
    expect(page.locator("main .error")).to_contain_text("since")


def test_cookie_login_is_httponly_strict_and_posts_need_the_console_header(
    gw: Gateway, prefix: str
) -> None:
    form = {"token": TOKENS["dispatcher"], "next": "//evil.example/board"}
    response = httpx.post(url(gw, "/login"), data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/board"  # never off-site
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert httpx.post(url(gw, "/login"), data={"token": "nope"}).status_code == 401

    with httpx.Client(base_url=url(gw, ""), cookies=response.cookies) as browser_like:
        assert browser_like.get("/api/incidents").status_code == 200
        body = {"elevator_id": f"{prefix}-c", "kind": "entrapment", "source": "phone"}
        # A cross-site form post carries no custom header: refused.
        assert browser_like.post("/api/incidents", json=body).status_code == 401
        made = browser_like.post("/api/incidents", json=body, headers={"X-Gateway-Console": "1"})
        assert made.status_code == 201
        # A bearer header decides on its own, cookie or not.
        bad = {"Authorization": "Bearer nope", "X-Gateway-Console": "1"}
        assert browser_like.post("/api/incidents", json=body, headers=bad).status_code == 401
        # A dispatcher may not open the regulator page.
        assert browser_like.get("/regulator").status_code == 403
    assert httpx.get(url(gw, "/board")).headers["location"] == "/login?next=/board"


def test_event_stream_sends_a_snapshot_then_changes_then_ends(
    gw: Gateway, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "POLLS_PER_STREAM", 4)  # the browser reconnects after the end
    first = phone_report(gw, f"{prefix}-e1", minutes_ago=1)
    register(gw, f"{prefix}-e1", address="1 Stream Road")
    seen: list[tuple[str, dict[str, Any]]] = []
    headers = {"Authorization": f"Bearer {TOKENS['regulator']}"}
    with httpx.stream("GET", url(gw, "/api/events"), headers=headers, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((name, json.loads(line.removeprefix("data: "))))
                if name == "snapshot":
                    call(gw, "POST", f"/api/incidents/{first['id']}/close", "dispatcher",
                         {"resolution": "false_alarm"})  # fmt: skip
    # The stream ended by itself (after POLLS_PER_STREAM ticks).
    names = [n for n, _ in seen]
    assert names[0] == "snapshot" and names.count("tick") == 4, names
    [item] = seen[0][1]["items"]
    assert item["incident"]["id"] == first["id"]
    assert item["elevator"]["address"] == "1 Stream Road"
    [(_, closed)] = [(n, d) for n, d in seen if n == "incident"]
    assert closed["incident"]["state"] == "closed"


# -- elevator and fleet -----------------------------------------------------------------------
def test_elevator_page_shows_registry_live_state_and_the_black_box(
    gw: Gateway, context: BrowserContext, device: Device, prefix: str
) -> None:
    trapped = f"{prefix}-box"
    register(gw, trapped, address="8 Kehua Street", inspection_due="2027-03-01")
    device.publish(f"elevators/{trapped}/online", "1", retain=True)
    # A trip up from the ground floor that stops between floors with a passenger.
    for seq, floor in enumerate(range(7)):
        fields = {"floor": floor, "moving": True, "door": "closed", "occupied": True}
        device.publish(f"elevators/{trapped}/status", status_frame(trapped, seq, **fields))
    with Car(device, trapped, first_seq=7, **TRAPPED):
        wait_for(
            lambda: call(gw, "GET", f"/api/elevators/{trapped}", "dispatcher").json()[
                "open_incident"
            ],
            timeout=20,
        )
        page = context.new_page()
        login(page, gw, "dispatcher", f"/elevators/{trapped}")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    expect(page.locator('#registry dd[data-key="address"]')).to_have_text("8 Kehua Street")
    expect(page.locator('#registry dd[data-key="inspection_due"]')).to_have_text("2027-03-01")
    expect(page.locator('#live dd[data-key="floor"]')).to_have_text("7")
    expect(page.locator('#live dd[data-key="occupied"]')).to_have_text(EN["yes"])
    expect(page.locator('#live dd[data-key="online"]')).to_have_text(EN["yes"])
    expect(page.locator("#blackbox svg polyline.floor-line")).to_have_count(1)
    expect(page.locator("#blackbox svg line.opened")).to_have_count(1)
    expect(page.locator("#incident-summary")).to_contain_text(EN["kind_entrapment"])
    screenshot(page, "elevator")
    device.publish(f"elevators/{trapped}/online", "", retain=True)


def test_fleet_overview_counts_and_filters_by_district_and_company(
    gw: Gateway, context: BrowserContext, device: Device, prefix: str
) -> None:
    north_x, north_y, south_x = f"{prefix}-n1", f"{prefix}-n2", f"{prefix}-s1"
    register(gw, north_x, district="North", maintenance_company="X Lifts")
    register(gw, north_y, district="North", maintenance_company="Y Lifts")
    register(gw, south_x, district="South", maintenance_company="X Lifts")
    for elevator_id, online in ((north_x, "1"), (north_y, "1"), (south_x, "0")):
        device.publish(f"elevators/{elevator_id}/online", online, retain=True)
    device.publish(f"elevators/{north_y}/status", status_frame(north_y, 0, mode="out_of_service"))
    phone_report(gw, north_x, minutes_ago=1)
    wait_for(
        lambda: (
            call(gw, "GET", "/api/fleet", "admin").json()["counts"]
            == {
                "elevators": 3,
                "online": 2,
                "offline": 1,
                "online_unknown": 0,
                "out_of_service": 1,
                "with_open_incidents": 1,
            }
        )
    )

    page = context.new_page()
    login(page, gw, "admin", "/fleet")

    def tile(name: str) -> Locator:
        return page.locator(f'[data-count="{name}"] .n')

    expect(page.locator("body")).to_have_attribute("data-loaded", "all")
    expect(tile("elevators")).to_have_text("3")
    expect(tile("offline")).to_have_text("1")
    expect(tile("out_of_service")).to_have_text("1")
    expect(tile("with_open_incidents")).to_have_text("1")
    screenshot(page, "fleet")

    page.select_option("#district", "North")
    expect(tile("elevators")).to_have_text("2")
    expect(tile("offline")).to_have_text("0")
    page.select_option("#company", "X Lifts")
    expect(tile("elevators")).to_have_text("1")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    expect(page.locator(f'#fleet tr[data-elevator="{north_x}"]')).to_be_visible()
    for elevator_id in (north_x, north_y, south_x):
        device.publish(f"elevators/{elevator_id}/online", "", retain=True)

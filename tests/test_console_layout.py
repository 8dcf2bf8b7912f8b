"""The console as a night dispatcher meets it, in headless Chromium against one gateway (real
Mosquitto, SQLite, 10x clock) shared by the module: a trapped car is one row with its
companion fault inside; a dispatch acknowledges; every page fits 1280, 1400 and 1920 px
without sideways scrolling; the elevator page's black box has no overlapping labels and
speaks Chinese; /docs fetches nothing from outside. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.settings import load_settings
from gateway.web.strings import STRINGS
from tests.conftest import (
    Broker,
    Device,
    event_frame,
    free_port,
    gateway_up,
    status_frame,
    wait_for,
)
from tests.test_web import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TRAPPED, Car

TOKENS = {
    "dispatcher": "d-layout-token-0123456789",
    "regulator": "r-layout-token-0123456789",
    "admin": "a-layout-token-0123456789",
}
WIDTHS = (1280, 1400, 1920)
EN, ZH = STRINGS["en"], STRINGS["zh"]
TRAPPED_ID = "L" + uuid.uuid4().hex[:8]
ADDRESS = "成都市武侯区人民南路四段 27 号 3 栋 2 号梯"
PHONE = "028-8555-0101"

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def gw(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("layout")
    settings = load_settings(
        mqtt_url=broker.url, mqtt_client_id="gw-layout-" + uuid.uuid4().hex[:6], tsdb_url="",
        store_url=f"sqlite:///{tmp / 'gateway.db'}", spool_dir=tmp / "spool",
        http_port=free_port(), flush_interval_s=0.05, tick_interval_s=0.02,
        tokens=",".join(f"{role}:{tok}" for role, tok in TOKENS.items()),
    )  # fmt: skip
    with Gateway(settings, ScaledClock(10.0)) as gateway:
        assert gateway.session.wait_connected(10)
        wait_for(lambda: gateway_up(gateway))
        yield gateway


def url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.settings.http_port}{path}"


def call(gw: Gateway, method: str, path: str, role: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    response = httpx.request(method, url(gw, path), headers=headers, json=body, timeout=10)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json()


@pytest.fixture(scope="module")
def episode(gw: Gateway, broker: Broker) -> Iterator[dict[str, Any]]:
    """A passenger trapped between floors, reported by telemetry (and still reporting while
    the module runs): the entrapment opens after its 20 s hold and the car's
    STOP_OUTSIDE_DOOR_ZONE after 45 s, as in the field, with two controller events for the
    black box; plus phone reports so the board has rows in every clock state."""
    call(gw, "PUT", f"/api/elevators/{TRAPPED_ID}", "admin", {
        "address": ADDRESS, "site": "CD-001", "district": "武侯区",
        "maintenance_company": "Apex Lift Service", "maintenance_phone": PHONE,
        "use_unit": "武侯区安居物业服务有限公司", "inspection_due": "2027-03-01",
    })  # fmt: skip
    device = Device(broker.url)
    topic = f"elevators/{TRAPPED_ID}"
    for seq, floor in enumerate(range(7)):  # a trip up that stops between floors
        fields = {"floor": floor, "moving": True, "door": "closed", "occupied": True}
        device.publish(f"{topic}/status", status_frame(TRAPPED_ID, seq, **fields))
    device.publish(f"{topic}/event", event_frame(TRAPPED_ID, 7, "X_DRIVE_TRIP"))
    device.publish(f"{topic}/event", event_frame(TRAPPED_ID, 8, "ALARM_BUTTON"))
    with Car(device, TRAPPED_ID, first_seq=9, **TRAPPED):

        def both() -> list[dict[str, Any]] | None:
            found = call(gw, "GET", f"/api/incidents?elevator_id={TRAPPED_ID}&include=children",
                         "dispatcher")  # fmt: skip
            return found if len(found) == 2 else None

        incidents = {i["kind"]: i for i in wait_for(both, timeout=30)}
        for n, minutes in enumerate((35, 25, 5)):
            at = gw.clock.now() - timedelta(minutes=minutes)
            call(gw, "POST", "/api/incidents", "dispatcher", {
                "elevator_id": f"PHONE-{n}", "kind": "entrapment", "source": "phone",
                "reported_at": at.isoformat(),
            })  # fmt: skip
        yield incidents
    device.close()


def login(page: Page, gw: Gateway, role: str, path: str) -> None:
    page.goto(url(gw, f"/login?next={path}"))
    page.fill("#token", TOKENS[role])
    page.click("#login")
    expect(page).to_have_url(url(gw, path))


def no_sideways_overflow(page: Page) -> None:
    """Nothing wider than the window: the page does not scroll sideways."""
    wide = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 0, f"{page.url} is {wide} px wider than the window"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- the board --------------------------------------------------------------------------------
def test_one_card_per_trapped_car_its_companion_inside_and_dispatch_acknowledges(
    gw: Gateway, browser: Browser, episode: dict[str, Any]
) -> None:
    main, companion = episode["entrapment"], episode["STOP_OUTSIDE_DOOR_ZONE"]
    assert companion["parent_id"] == main["id"] and main["parent_id"] is None
    # The API's default list shows the episode once.
    listed = call(gw, "GET", f"/api/incidents?elevator_id={TRAPPED_ID}", "dispatcher")
    assert [i["id"] for i in listed] == [main["id"]]

    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    page = context.new_page()
    login(page, gw, "dispatcher", "/board")
    row = page.locator(".card", has=page.locator(f'a.elevator:text-is("{TRAPPED_ID}")'))
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-kind", "entrapment")
    expect(row.locator(".companions")).to_contain_text(EN["kind_STOP_OUTSIDE_DOOR_ZONE"])
    expect(row.locator(".address")).to_have_text(ADDRESS)
    # The tab title counts the unacknowledged rows: the trapped car and three phone reports.
    expect(page).to_have_title(f"(4) {EN['nav_board']} · {EN['product']}")

    # Sound: one click, remembered across a reload.
    page.click("#sound")
    expect(page.locator("#sound")).to_have_text(EN["sound_on"])
    page.reload()
    expect(page.locator("#sound")).to_have_text(EN["sound_on"])

    # Keyboard only: to the trapped car's row, open its details, type a crew, Enter.
    page.locator("body").click(position={"x": 5, "y": 300})
    for _ in range(10):
        page.keyboard.press("j")
        if page.evaluate("document.activeElement.dataset.id") == main["id"]:
            break
    assert page.evaluate("document.activeElement.dataset.id") == main["id"]
    page.keyboard.press("Enter")
    expect(row.locator(".details")).to_have_attribute("open", "")
    expect(row.locator(".companion-list li")).to_have_count(1)
    page.keyboard.press("c")
    page.keyboard.type("C-9")
    page.keyboard.press("Enter")  # dispatched without an acknowledgement first
    expect(row.locator(".state")).to_have_text(EN["state_dispatched"])
    expect(row).not_to_have_class("card flash")
    expect(page).to_have_title(f"(3) {EN['nav_board']} · {EN['product']}")
    for width in (*WIDTHS, 2560):
        page.set_viewport_size({"width": width, "height": 900})
        no_sideways_overflow(page)
        if width in WIDTHS:
            shot(page, f"board-{width}")
    context.close()

    after = call(gw, "GET", f"/api/incidents/{main['id']}", "dispatcher")
    assert after["acknowledged_at"] == after["dispatched_at"] is not None
    assert after["timeline"][-2]["what"] == "acknowledged (implied by dispatch)"


# -- every page at the console widths ---------------------------------------------------------
# (role, path, what shows once the page has drawn its data)
PAGES = (
    ("dispatcher", "/board", '#link:text-is("Live")'),
    ("dispatcher", f"/elevators/{TRAPPED_ID}", 'body[data-loaded="true"]'),
    ("dispatcher", "/docs", "table tbody tr"),
    ("admin", "/fleet", 'body[data-loaded="all"]'),
    ("regulator", "/regulator", "#period"),  # drawn on the server
)


@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_scrolls_sideways(
    gw: Gateway, browser: Browser, episode: dict[str, Any], width: int
) -> None:
    for role in ("dispatcher", "admin", "regulator"):
        context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US")
        page = context.new_page()
        for n, (_role, path, ready) in enumerate(p for p in PAGES if p[0] == role):
            if n == 0:
                login(page, gw, role, path)
            else:
                page.goto(url(gw, path))
            expect(page.locator(ready).first).to_be_attached()
            no_sideways_overflow(page)
        context.close()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    for path in (f"/e/{TRAPPED_ID}", "/login"):
        page.goto(url(gw, path))
        no_sideways_overflow(page)
    context.close()


def test_public_page_on_a_phone(gw: Gateway, browser: Browser, episode: dict[str, Any]) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        locale="zh-CN",
    )  # fmt: skip
    page = context.new_page()
    page.goto(url(gw, f"/e/{TRAPPED_ID}"))
    expect(page.locator("body")).to_contain_text(ADDRESS)
    expect(page.locator("#maintenance-phone")).to_have_text(PHONE)
    no_sideways_overflow(page)
    shot(page, "public-phone-390")
    context.close()


# -- the elevator page ------------------------------------------------------------------------
def test_elevator_page_leads_with_the_entrapment_in_chinese_without_overlaps(
    gw: Gateway, browser: Browser, episode: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "lang", "value": "zh", "url": url(gw, "/")}])
    page = context.new_page()
    login(page, gw, "dispatcher", f"/elevators/{TRAPPED_ID}")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    summary = page.locator("#incident-summary")
    expect(summary).to_contain_text(ZH["kind_entrapment"])
    expect(summary).to_contain_text(PHONE)
    expect(page.locator('#registry dd[data-key="maintenance_phone"]')).to_have_text(PHONE)
    expect(page.locator('#live dd[data-key="door"]')).to_have_text(ZH["val_closed"])
    expect(page.locator('#live dd[data-key="mode"]')).to_have_text(ZH["val_normal"])
    overlaps = page.evaluate(
        """() => {
          const box = document.querySelector('#blackbox svg').getBoundingClientRect();
          const rects = [...document.querySelectorAll('#blackbox svg text')]
            .map((t) => [t.textContent, t.getBoundingClientRect()]);
          const out = rects.filter(([, r]) => r.left < box.left - 1 || r.right > box.right + 1)
            .map(([s]) => 'outside: ' + s);
          rects.forEach(([a, r], i) => rects.slice(i + 1).forEach(([b, s]) => {
            if (r.left < s.right - 1 && s.left < r.right - 1 && r.top < s.bottom - 1
                && s.top < r.bottom - 1) out.push(a + ' / ' + b);
          }));
          return out;
        }"""
    )
    assert overlaps == []
    no_sideways_overflow(page)
    shot(page, "elevator-zh")
    context.close()


# -- /docs on a closed LAN --------------------------------------------------------------------
def test_docs_load_with_no_request_leaving_localhost(gw: Gateway, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    login(page, gw, "dispatcher", "/docs")
    page.wait_for_load_state("networkidle")
    expect(page.locator("table")).to_contain_text("/api/incidents/{incident_id}/dispatch")
    own = url(gw, "/")
    assert requested and all(u.startswith(own) for u in requested), requested
    context.close()


# -- a drill (last: its row adds to the board the tests above count) --------------------------
def test_a_drill_started_on_the_board_is_a_marked_row_of_its_own(
    gw: Gateway, browser: Browser, episode: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    login(page, gw, "dispatcher", "/board")
    page.fill("#drill-elevator", TRAPPED_ID)
    page.click('#drill button[type="submit"]')
    # A row of its own, marked, beside the real entrapment of the same car (never joined).
    rows = page.locator(".card", has=page.locator(f'a.elevator:text-is("{TRAPPED_ID}")'))
    expect(rows).to_have_count(2)
    drill_row = rows.filter(has=page.locator(".drill-flag:visible"))
    expect(drill_row).to_have_count(1)
    expect(drill_row.locator(".drill-flag")).to_have_text(EN["drill"])
    listed = call(gw, "GET", f"/api/incidents?elevator_id={TRAPPED_ID}", "dispatcher")
    assert sorted(i["drill"] for i in listed) == [False, True]
    context.close()

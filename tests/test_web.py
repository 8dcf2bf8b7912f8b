"""The dispatch console in real headless Chromium (Debian's `chromium`, driven by Playwright)
against a running gateway on real Mosquitto and SQLite.

The gateway runs on a scaled clock (10x) so a rule-detected entrapment opens within seconds;
every time asserted is the gateway's own. Screenshots of each page go to `test-artifacts/`.
"""

from __future__ import annotations

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

from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.web.strings import STRINGS
from tests.conftest import Device, status_frame, wait_for

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
TOKENS = {"dispatcher": "d-web", "regulator": "r-web", "admin": "a-web"}
SPEED = 10.0
TIMEOUT_MS = 20_000
TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}
EN = STRINGS["en"]

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
        wait_for(lambda: _up(gateway))
        yield gateway


def _up(gw: Gateway) -> bool:
    try:
        return httpx.get(url(gw, "/api/health")).status_code == 200
    except httpx.HTTPError:
        return False


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

    def __init__(self, device: Device, elevator_id: str, **fields: Any) -> None:
        self._device, self._id, self._fields = device, elevator_id, fields
        self._seq = 0
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

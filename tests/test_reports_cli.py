"""`elevator-gateway report` in a subprocess against a real SQLite store, and its HTML file
rendered in real headless Chromium (`.ci/run` installs Debian's `chromium`; a missing
binary fails the test)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from playwright.sync_api import sync_playwright

from gateway.reports import SECTIONS
from gateway.store import open_store
from tests.test_reports import INCIDENTS, MIN, REGISTRY, make_incident

ROOT = Path(__file__).resolve().parent.parent
PERIOD = ["--since", "2026-03-01", "--until", "2026-04-01"]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# A4 is 210 mm wide: 794 CSS px on screen; printed with 12 mm margins, 186 mm = 703 px.
A4_PX, A4_PRINTABLE_PX = 794, 703


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    store_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    store = open_store(store_url)
    registered = datetime(2026, 1, 1, tzinfo=UTC)
    for record in REGISTRY:
        store.put_elevator(record["elevator_id"], record, registered)
    for incident in INCIDENTS:
        assert store.insert_incident(incident, [], incident.opened_at)
    store.close()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return clean | {"PYTHONPATH": str(ROOT), "GATEWAY_STORE_URL": store_url}


def report(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "report", *PERIOD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_json_has_every_section_and_the_figures(env: dict[str, str]) -> None:
    out = json.loads(report(env, "--format", "json").stdout)
    assert out["report"]["since"] == "2026-02-28T16:00:00Z"  # local midnight in Shanghai
    assert out["report"]["timezone"] == "Asia/Shanghai"
    assert set(out) == {"report", *SECTIONS}
    a, b = out["response-times"]
    assert (a["group"], a["incidents"], a["within_limit_pct"], a["arrival_p90_s"]) == (
        "A",
        6,
        66.67,
        2100,
    )
    assert (b["group"], b["arrival_median_s"]) == ("B", 720)
    by_unit = json.loads(report(env, "--format", "json", "--group-by", "use_unit").stdout)
    assert [g["group"] for g in by_unit["response-times"]] == ["U1", "U2"]


def test_csv_table_and_errors(env: dict[str, str], tmp_path: Path) -> None:
    text = report(env, "--format", "csv", "--section", "breaches").stdout
    assert text.splitlines()[0].startswith("incident_id,elevator_id,")
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["a5", "a6"]
    done = report(env, "--format", "csv", ok=False)
    assert done.returncode == 2 and "--out" in done.stderr
    report(env, "--format", "csv", "--out", str(tmp_path / "csv"))
    assert sorted(p.stem for p in (tmp_path / "csv").iterdir()) == sorted(SECTIONS)
    wide = env | {"COLUMNS": "250"}  # Rich fits tables to the terminal's width
    table = report(wide, "--format", "table", "--section", "response-times").stdout
    assert "response-times" in table and "66.67" in table
    bad = report(env, "--format", "json", "--since", "soon", ok=False)
    assert bad.returncode == 2 and "since" in bad.stderr


def _chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (.ci/run installs Debian's chromium)"
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr", "--v=0", *args, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def _console(stderr: str) -> list[str]:
    """What the page logged to its console (errors, CSP violations), as Chromium reports it."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_check_sees_page_errors(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("broken")</script></body></html>')
    assert any(
        "broken" in line for line in _console(_chromium(tmp_path, page, "--dump-dom").stderr)
    )


def test_html_bulletin_is_self_contained_fits_a4_and_names_the_unregistered(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = open_store(env["GATEWAY_STORE_URL"])
    ghost = make_incident("g1", elevator="GHOST", company=None, district=None, arrival=7 * MIN)
    assert store.insert_incident(ghost, [], ghost.opened_at)
    store.close()
    page = tmp_path / "report.html"
    report(env, "--format", "html", "--out", str(page))
    html = page.read_text(encoding="utf-8")
    # self-contained: nothing to fetch, nothing to run
    assert not re.search(r"<script|<link|\ssrc=|\shref=", html, re.IGNORECASE)
    assert "None" not in html and "unregistered" in html
    shown = re.sub(r"<[^>]*>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.DOTALL))
    assert "Definitions" in shown and not re.search(r"\b[a-z]+_[a-z_]+\b", shown)  # snake_case

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        errors: list[str] = []
        for media, width in (("screen", A4_PX), ("print", A4_PRINTABLE_PX)):
            tab = browser.new_page(viewport={"width": width, "height": 1100})
            tab.on("console", lambda m: errors.append(m.text))
            tab.emulate_media(media=media)
            tab.goto(page.as_uri())
            overflow = tab.evaluate(
                """() => [document.documentElement, ...document.querySelectorAll('table, svg')]
                .filter((e) => e.scrollWidth > e.clientWidth + 1 ||
                               e.getBoundingClientRect().right > innerWidth + 1)
                .map((e) => e.id || e.tagName)"""
            )
            assert overflow == [], (media, overflow)
            figures = tab.locator(".headline [data-figure]")
            assert figures.count() == 8
            # the headline comes first, the compliance lists after the figures
            order = tab.evaluate(
                "() => [...document.querySelectorAll('.headline, #rank-companies, "
                "#faults, .list')].map((e) => e.className || e.id)"
            )
            assert order[:3] == ["headline", "rank-companies", "faults"] and order[3] == "list"
            if media == "screen":
                ARTIFACTS.mkdir(exist_ok=True)
                tab.screenshot(path=str(ARTIFACTS / "report-bulletin.png"), full_page=True)
            tab.close()
        browser.close()
    assert errors == []
    rank = re.search(r'id="rank-companies".*?</table>', html, re.DOTALL)
    assert rank and rank.group(0).index(">A<") < rank.group(0).index("unregistered")


def test_pdf_is_printed_by_chromium_on_a4(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    report(env, "--format", "pdf", "--out", str(out))
    data = out.read_bytes()
    assert data[:5] == b"%PDF-"
    pdf = pdfium.PdfDocument(data)
    width, height = pdf[0].get_size()
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    image = pdf[0].render(scale=1.5).to_pil()
    assert image.convert("L").getextrema()[0] < 64  # there is ink on the first page
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / "report-bulletin-pdf-page1.png")

    missing = report(env, "--format", "pdf", ok=False)
    assert missing.returncode == 2 and "--out" in missing.stderr
    no_chromium = report(
        env | {"PATH": str(tmp_path)}, "--format", "pdf", "--out", str(tmp_path / "x.pdf"), ok=False
    )
    assert no_chromium.returncode == 2 and "Chromium" in no_chromium.stderr
    assert (
        "apt-get install chromium" in no_chromium.stderr and "Traceback" not in no_chromium.stderr
    )
    assert not (tmp_path / "x.pdf").exists()


def test_a_missing_store_is_refused_not_created(env: dict[str, str], tmp_path: Path) -> None:
    gone = tmp_path / "nowhere" / "gateway.db"
    done = report(env | {"GATEWAY_STORE_URL": f"sqlite:///{gone}"}, "--format", "json", ok=False)
    assert done.returncode == 2 and f"sqlite:///{gone}" in done.stderr
    assert "Traceback" not in done.stderr and not gone.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file, but no gateway schema in it
    done = report(env | {"GATEWAY_STORE_URL": f"sqlite:///{empty}"}, "--format", "json", ok=False)
    assert done.returncode == 2 and "empty.db" in done.stderr
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_until_defaults_to_the_newest_incident_of_a_store_ahead_of_the_clock(
    tmp_path: Path,
) -> None:
    """The demo's scaled clock runs ahead of the wall: a report without --until must still
    cover its incidents."""
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    store = open_store(store_url)
    ahead = datetime.now(UTC) + timedelta(days=2)
    incident = make_incident("future", at=ahead, arrival=9 * MIN)
    assert store.insert_incident(incident, [], incident.opened_at)
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "report", "--format", "json"],
        env=env | {"PYTHONPATH": str(ROOT), "GATEWAY_STORE_URL": store_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    until = datetime.fromisoformat(out["report"]["until"])
    assert until == incident.updated_at + timedelta(seconds=1)
    assert [g["incidents"] for g in out["response-times"]] == [1]

"""`elevator-gateway report` in a subprocess against a real SQLite store, and its HTML file
rendered in real headless Chromium (`.ci/run` installs Debian's `chromium`; a missing
binary fails the test)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.reports import SECTIONS
from gateway.store import open_store
from tests.test_reports import INCIDENTS, REGISTRY

ROOT = Path(__file__).resolve().parent.parent
PERIOD = ["--since", "2026-03-01", "--until", "2026-04-01"]


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


def test_html_report_renders_in_chromium_with_its_charts(
    env: dict[str, str], tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    report(env, "--format", "html", "--out", str(page))
    html = page.read_text(encoding="utf-8")
    # self-contained: nothing to fetch, nothing to run
    assert not re.search(r"<script|<link|\ssrc=|\shref=", html, re.IGNORECASE)

    rendered = _chromium(tmp_path, page, "--dump-dom")
    assert _console(rendered.stderr) == []
    dom = rendered.stdout
    for chart in ("chart-arrival-histogram", "chart-companies", "chart-monthly"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', dom, re.DOTALL)
        assert svg and svg.group(0).count("<rect") >= 1, chart
    assert 'id="limit-line"' in dom and "30-minute limit" in dom
    histogram = re.search(r'<svg id="chart-arrival-histogram".*?</svg>', dom, re.DOTALL)
    assert histogram and histogram.group(0).count('class="bar"') == 13
    assert "Definitions" in dom and "blacklist-candidates" in dom

    shot = tmp_path / "report.png"
    _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1200,1800")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

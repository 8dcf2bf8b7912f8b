"""Abuse resistance at the edges a city deployment exposes, and the operator's mistakes: each
test tries the attack or the mistake against a running gateway (real Mosquitto and SQLite)
and checks it is refused."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, expect
from typer.testing import CliRunner

from deploy.verify_webhook import TOLERANCE_S, verify
from gateway.api.auth import FAILURES_BURST, FAILURES_PER_MINUTE, TokenBook
from gateway.api.deps import Context
from gateway.api.headers import CSP
from gateway.app import Gateway, serve_http
from gateway.citizen import REPORTS_PER_MINUTE
from gateway.cli import app as cli
from gateway.clock import FixedClock
from gateway.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER
from gateway.reports import to_csv
from gateway.settings import MIN_TOKEN_CHARS, parse_tokens
from gateway.web.public import VIEWS_BURST
from gateway.web.strings import STRINGS
from tests.conftest import free_port, gateway_up, wait_for
from tests.gateways import start_gateway
from tests.people import ARRIVAL_LIMIT_S, TOKENS, call, clock, gw, incidents_of, register, url
from tests.test_incident_telemetry import WebhookReceiver
from tests.test_web import browser, playwright

__all__ = ["browser", "gw", "playwright"]  # fixtures

ROOT = Path(__file__).resolve().parent.parent
EN = STRINGS["en"]


def login(gw: Gateway, token: str, client: str) -> httpx.Response:
    """A sign-in form post from `client` (the address a reverse proxy would forward)."""
    return httpx.post(
        url(gw, "/login"),
        data={"token": token, "next": "/board"},
        headers={"X-Forwarded-For": client, "Accept-Language": "en"},
        timeout=10,
    )


# -- sign-in and tokens ------------------------------------------------------------------------
def test_thirty_wrong_logins_get_429_and_other_clients_still_sign_in(gw: Gateway) -> None:
    guesser, colleague = "203.0.113.50", "203.0.113.51"
    statuses = [login(gw, f"guess-{n:02d}-" + "x" * 30, guesser).status_code for n in range(30)]
    assert statuses == [401] * FAILURES_BURST + [429] * (30 - FAILURES_BURST)
    refused = login(gw, "one-more-guess-" + "x" * 30, guesser)
    assert refused.status_code == 429 and EN["login_too_many"] in refused.text
    assert int(refused.headers["retry-after"]) == 60 / FAILURES_PER_MINUTE
    # Guessing right now gains nothing; another client is not affected.
    assert login(gw, TOKENS["dispatcher"], guesser).status_code == 429
    signed_in = login(gw, TOKENS["dispatcher"], colleague)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/board"

    # The API's wrong bearer tokens count alike, and pages with a stale cookie too.
    api = {"X-Forwarded-For": "203.0.113.52"}
    wrong = {"Authorization": "Bearer " + "w" * 30} | api
    codes = [
        httpx.get(url(gw, "/api/incidents"), headers=wrong).status_code
        for _ in range(FAILURES_BURST + 1)
    ]
    assert codes == [401] * FAILURES_BURST + [429]
    right = {"Authorization": f"Bearer {TOKENS['dispatcher']}"} | api
    assert httpx.get(url(gw, "/api/incidents"), headers=right).status_code == 429
    cookie = {"Cookie": "gateway_token=" + "c" * 30, "X-Forwarded-For": "203.0.113.53"}
    pages = [httpx.get(url(gw, "/board"), headers=cookie) for _ in range(FAILURES_BURST + 1)]
    assert [p.status_code for p in pages] == [303] * FAILURES_BURST + [429]
    assert 'gateway_token=""' in pages[0].headers["set-cookie"]  # the stale cookie is dropped

    clock(gw).advance(60 / FAILURES_PER_MINUTE)  # one failure's worth of refill
    assert httpx.get(url(gw, "/api/incidents"), headers=right).status_code == 200


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ("dispatcher:abc", f"at least {MIN_TOKEN_CHARS}"),
        (f"admin:{'a' * 40},dispatcher:{'d' * 23}", "entry 2 (dispatcher): token of 23"),
        (f"dispatcher:{'s' * 30},admin:{'s' * 30}", "listed as dispatcher and admin"),
    ],
)
def test_a_short_or_ambiguous_token_refuses_the_start(tokens: str, problem: str) -> None:
    result = CliRunner().invoke(cli, ["run"], env={"GATEWAY_TOKENS": tokens})
    assert result.exit_code == 2
    assert "tokens" in result.output and problem in result.output
    assert "s" * 30 not in result.output  # the message names the entry, never the token


def test_a_short_token_in_the_tokens_file_refuses_the_start(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# rotated 2026-12-01\nregulator:{'r' * 30}\nadmin:short\n")
    result = CliRunner().invoke(cli, ["api"], env={"GATEWAY_TOKENS_FILE": str(token_file)})
    assert result.exit_code == 2
    assert "tokens_file" in result.output and "entry 2 (admin): token of 5" in result.output


def test_token_new_prints_a_strong_token() -> None:
    outputs = [
        CliRunner().invoke(cli, ["token", "new", "--role", "dispatcher"]).output for _ in range(2)
    ]
    entries = [parse_tokens(o.strip()) for o in outputs]
    [(first, role)] = entries[0].items()
    assert role == "dispatcher" and len(first) >= 43 and first not in entries[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first)


def test_tokens_rotate_on_sighup_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    old, new = "o" * 32, "n" * 32
    token_file = tmp_path / "tokens"
    token_file.write_text(f"dispatcher:{old}\n")
    port = free_port()
    env = dict(os.environ) | {
        "PYTHONPATH": str(ROOT),
        "GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_HTTP_PORT": str(port),
        "GATEWAY_TOKENS_FILE": str(token_file),
    }
    log = tmp_path / "api.log"
    process = start_gateway(env, log, command="api")

    def status(token: str) -> int:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(f"http://127.0.0.1:{port}/api/incidents", headers=headers).status_code
        except httpx.HTTPError:
            return 0

    try:
        wait_for(lambda: status(old) == 200)
        token_file.write_text(f"dispatcher:{new}\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: status(new) == 200)
        assert status(old) == 401
        token_file.write_text("dispatcher:short\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "tokens_reload_refused" in log.read_text())
        assert status(new) == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert new not in log.read_text()


# -- /docs, headers, cookies -------------------------------------------------------------------
@contextmanager
def other_server(gw: Gateway, **settings: Any) -> Iterator[str]:
    """A second HTTP server on the running gateway's parts, with other settings; its URL."""
    context = Context(
        gw.store, gw.incidents, gw.clock, gw.health, gw.live, gw.registry.update,
        ZoneInfo(gw.settings.timezone),
    )  # fmt: skip
    port = free_port()
    changed = gw.settings.model_copy(update={"http_port": port, **settings})
    server, thread = serve_http(context, changed, TokenBook({TOKENS["dispatcher"]: "dispatcher"}))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_docs_need_a_login_by_default_and_fetch_nothing_from_elsewhere(gw: Gateway) -> None:
    anonymous = httpx.get(url(gw, "/docs"))
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/docs"
    assert httpx.get(url(gw, "/openapi.json")).status_code == 401
    schema = call(gw, "GET", "/openapi.json")
    assert schema.status_code == 200 and "/api/incidents" in schema.json()["paths"]
    docs = call(gw, "GET", "/docs")
    assert docs.status_code == 200 and "/api/incidents/{incident_id}/dispatch" in docs.text
    links = re.findall(r'(?:src|href)="([^"#]*)"', docs.text)
    assert links and "<script src" in docs.text
    assert [a for a in links if not a.startswith(("/", url(gw, "/")))] == []  # ours only
    assert "cdn" not in docs.text.lower()

    with other_server(gw, public_docs=True) as public:
        assert httpx.get(f"{public}/docs").status_code == 200
        assert httpx.get(f"{public}/openapi.json").json()["paths"] == schema.json()["paths"]


def test_security_headers_on_every_response(gw: Gateway, prefix: str) -> None:
    car = f"{prefix}-hdr"
    register(gw, car, address="1 Test Road")
    for path in [
        "/login", "/", "/board", "/docs", "/api/health", "/api/incidents", "/metrics",
        "/static/console.css", f"/e/{car}", "/e/unknown-car", "/nothing-here",
    ]:  # fmt: skip
        headers = httpx.get(url(gw, path)).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "http" not in csp, path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
    assert CSP.startswith("default-src 'self'") and "unsafe" not in CSP


def test_cookies_are_secure_when_the_public_address_is_https(gw: Gateway) -> None:
    form = {"token": TOKENS["dispatcher"], "next": "/board"}
    plain = httpx.post(url(gw, "/login"), data=form)
    assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
    with other_server(gw, public_base_url="https://lifts.example.gov.cn") as behind_tls:
        signed_in = httpx.post(f"{behind_tls}/login", data=form)
    cookie = signed_in.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_console_pages_run_under_the_csp(gw: Gateway, browser: Browser) -> None:
    """No page of the console needs an inline script, inline style or another origin."""
    context = browser.new_context(locale="en-US")
    violations: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: violations.append(m.text))
        for role, paths in (
            ("dispatcher", ["/board", "/fleet", "/elevators/E1", "/docs"]),
            ("regulator", ["/regulator"]),
        ):
            page.goto(url(gw, "/login"))
            page.fill("#token", TOKENS[role])
            page.click("#login")
            for path in paths:
                page.goto(url(gw, path))
                expect(page.locator("main")).to_be_visible()
                page.wait_for_load_state("networkidle")
            page.click("form[action='/logout'] button")
    finally:
        context.close()
    assert [v for v in violations if "Content Security Policy" in v] == []


# -- the public page ---------------------------------------------------------------------------
def test_public_page_burst_of_1000_gets_is_limited_and_others_are_served(
    gw: Gateway, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    car = f"{prefix}-burst"
    register(gw, car, address="12 Jinli Road")
    lookups: list[str] = []
    get_elevator = gw.store.get_elevator

    def counted(elevator_id: str) -> dict[str, Any] | None:
        lookups.append(elevator_id)
        return get_elevator(elevator_id)

    monkeypatch.setattr(gw.store, "get_elevator", counted)
    with httpx.Client(headers={"X-Forwarded-For": "198.51.100.66"}, timeout=10) as flood:
        responses = [flood.get(url(gw, f"/e/{car}")) for _ in range(1000)]
    codes = [r.status_code for r in responses]
    assert codes == [200] * VIEWS_BURST + [429] * (1000 - VIEWS_BURST)
    assert int(responses[-1].headers["retry-after"]) >= 1
    assert lookups == [car]  # one lookup for the whole burst: the rest came from the cache
    other = httpx.get(url(gw, f"/e/{car}"), headers={"X-Forwarded-For": "198.51.100.67"})
    assert other.status_code == 200 and "12 Jinli Road" in other.text


def test_no_client_address_in_the_logs_or_the_store_after_citizen_reports(
    gw: Gateway, prefix: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    car, address = f"{prefix}-priv", "203.0.113.77"
    register(gw, car, address="5 Quiet Lane")
    capfd.readouterr()
    sent = [
        httpx.post(
            url(gw, f"/e/{car}/report"),
            data={"problem": "trapped", "note": "two people inside"},
            headers={"X-Forwarded-For": address},
        ).status_code
        for _ in range(REPORTS_PER_MINUTE + 1)
    ]
    assert sent[-1] == 429  # the rate limit's log line was written
    wait_for(lambda: incidents_of(gw, car))
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "public_reports_rate_limited" in logs
    assert address not in logs
    engine = sa.create_engine(gw.settings.store_url)
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            assert address not in repr(rows), table
    engine.dispose()


def test_citizen_reports_start_the_clock_are_marked_and_false_ones_are_listed(
    gw: Gateway, prefix: str
) -> None:
    car, other = f"{prefix}-cit", f"{prefix}-cit2"
    for elevator_id in (car, other):
        register(gw, elevator_id, address="8 Report Street", maintenance_company="Shu Lifts")
    opened_at = clock(gw).now()

    def citizen_trapped(elevator_id: str) -> dict[str, Any]:
        form = {"problem": "trapped"}
        assert httpx.post(url(gw, f"/e/{elevator_id}/report"), data=form).status_code == 303
        return next(i for i in incidents_of(gw, elevator_id) if i["state"] != "closed")

    incident = citizen_trapped(car)
    assert (incident["kind"], incident["source"]) == ("entrapment", "citizen")
    deadline = opened_at + timedelta(seconds=ARRIVAL_LIMIT_S)
    assert incident["deadline_at"] == deadline.isoformat().replace("+00:00", "Z")
    for _ in range(2):  # two pranks, each closed as a false alarm
        incident = citizen_trapped(car)
        closed = call(gw, "POST", f"/api/incidents/{incident['id']}/close",
                      body={"resolution": "false_alarm"})  # fmt: skip
        assert closed.status_code == 200
        clock(gw).advance(11 * 60)  # past the crowd window: the next report is news
    phone = {"elevator_id": car, "kind": "DOOR_FAIL_TO_CLOSE", "source": "phone"}
    phoned = call(gw, "POST", "/api/incidents", body=phone).json()
    call(gw, "POST", f"/api/incidents/{phoned['id']}/close", body={"resolution": "false_alarm"})

    # A real one, elsewhere, whose crew is late: counted and marked citizen in the figures.
    real = citizen_trapped(other)
    clock(gw).advance(ARRIVAL_LIMIT_S + 1)
    wait_for(lambda: call(gw, "GET", f"/api/incidents/{real['id']}").json()["sla"] == "breached")

    listed = call(gw, "GET", "/api/reports/citizen-false-alarms", "regulator").json()
    assert [(r["elevator_id"], r["false_alarms"], r["entrapments"]) for r in listed] == [
        (car, 2, 2)
    ]
    assert call(gw, "GET", "/api/reports/citizen-false-alarms", "dispatcher").status_code == 403
    figures = call(
        gw, "GET", "/api/metrics/response-times?group_by=elevator_id", "regulator"
    ).json()
    assert {(f["group"], f["citizen_started"]) for f in figures} >= {(other, 1)}
    breaches = call(gw, "GET", "/api/reports/breaches", "regulator").json()
    assert [(b["incident_id"], b["source"]) for b in breaches] == [(real["id"], "citizen")]


# -- exports ------------------------------------------------------------------------------------
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(gw: Gateway, prefix: str) -> None:
    hostile = {
        '=HYPERLINK("http://evil.example","x")': "'=HYPERLINK",
        "+1+cmd|' /C calc'!A0": "'+1+cmd",
        "-2+3": "'-2+3",
        "@SUM(A1:A9)": "'@SUM",
        "\tTAB": "'\tTAB",
        "\rCR": "'\nCR",  # and quoted, so no row starts there
    }
    for n, company in enumerate(hostile):
        if company.isprintable():
            register(gw, f"{prefix}-csv{n}", maintenance_company=company)  # no inspection date
        else:  # the API refuses control characters: a record from before, or another tool
            record = {"maintenance_company": company}
            gw.store.put_elevator(f"{prefix}-csv{n}", record, gw.clock.now())
    text = call(gw, "GET", "/api/reports/inspections-due.csv", "regulator").text
    cells = {row[1] for row in csv.reader(io.StringIO(text))}
    for company, neutralised in hostile.items():
        assert company not in cells
        assert any(c.startswith(neutralised) for c in cells), company

    # Numbers stay numbers, a minus sign included.
    assert to_csv(_Row, [_Row("Plain", -1.5), _Row("=1+1", 2.0)]) == (
        "name,delta\nPlain,-1.5\n'=1+1,2.0\n"
    )


@dataclass(frozen=True)
class _Row:
    name: str
    delta: float


# -- webhooks ------------------------------------------------------------------------------------
def test_security_doc_quotes_the_verifier_that_the_tests_run() -> None:
    code = (ROOT / "deploy" / "verify_webhook.py").read_text()
    assert code.strip() in (ROOT / "docs" / "security.md").read_text()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_a_replayed_or_tampered_webhook_is_refused_by_the_example_verifier(
    gateway_settings: Callable[..., Any], hook: WebhookReceiver
) -> None:
    secret = "whsec-0123456789abcdef0123456789"
    settings = gateway_settings(
        tsdb_url="",
        tokens=f"dispatcher:{TOKENS['dispatcher']}",
        alert_webhooks=[hook.url],
        webhook_secret=secret,
    )
    start = datetime.now(UTC).replace(microsecond=0)
    with Gateway(settings, FixedClock(start)) as gw:
        wait_for(lambda: gateway_up(gw))
        body = {"elevator_id": "WH1", "kind": "entrapment", "source": "phone"}
        assert call(gw, "POST", "/api/incidents", body=body).status_code == 201
        wait_for(lambda: hook.received)
    headers, payload = hook.received[0]
    assert int(headers[TIMESTAMP_HEADER]) == int(start.timestamp())
    now = start.timestamp() + 2
    assert verify(secret, headers, payload, now=now)  # as delivered: accepted
    # Captured and played again later: the timestamp gives it away.
    assert not verify(secret, headers, payload, now=now + TOLERANCE_S + 1)
    # ... and a fresh timestamp pasted on breaks the signature.
    restamped = headers | {TIMESTAMP_HEADER: str(int(now + TOLERANCE_S + 1))}
    assert not verify(secret, restamped, payload, now=now + TOLERANCE_S + 1)
    tampered = payload.replace(b'"critical"', b'"minor"')
    assert tampered != payload and not verify(secret, headers, tampered, now=now)
    assert not verify("another-secret", headers, payload, now=now)
    assert not verify(secret, {SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, payload, now=now)

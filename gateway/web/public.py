"""The public elevator page, `/e/{elevator_id}`: what the QR code on the car's safety tag opens.

No login, so it shows only what a passenger may see of this one elevator (its registry
record, its state in a word, the outage notice) and never a person's id, a crew or a
dispatcher. Server-rendered with one small stylesheet and no script, for a poor connection.
The report form posts plain `application/x-www-form-urlencoded`; it is size-limited and
rate-limited per client (behind a reverse proxy on 127.0.0.1, uvicorn takes the address from
`X-Forwarded-For`; see its `forwarded_allow_ips`). Views are rate-limited per client too, and
cheap: what the page says of an elevator is looked up at most once per `FACTS_TTL_S` (a
report drops it at once, so its sender sees the page change). Clients are known by a keyed
hash of their address only (`gateway.api.clients`).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from gateway.api.clients import ClientLimiter, client_key
from gateway.api.deps import Context, context
from gateway.citizen import NOTE_MAX_CHARS, PROBLEMS, CitizenDesk
from gateway.frames import ELEVATOR_ID_RE
from gateway.reports import Notice, maintenance_overdue
from gateway.web.pages import LANG_COOKIE, language, secure_cookies
from gateway.web.public_strings import PUBLIC_STRINGS
from gateway.web.strings import LANGUAGES

# A note of NOTE_MAX_CHARS Chinese characters is 9 bytes each once form-encoded.
MAX_FORM_BYTES: Final = 8192
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# A passer-by opens the page a few times; a lobby behind one carrier address, a few dozen.
VIEWS_PER_MINUTE: Final = 60
VIEWS_BURST: Final = 60
FACTS_TTL_S: Final = 5.0
_FACTS_KEPT: Final = 10_000

router = APIRouter(include_in_schema=False)
_templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Ctx = Annotated[Context, Depends(context)]


class _Rejected(Exception):
    def __init__(self, status: int, key: str) -> None:
        self.status, self.key = status, key


class FactsCache:
    """What the page says of each elevator (None: not registered), for FACTS_TTL_S of the
    gateway's clock, so a burst of views costs one lookup per elevator, not one per view."""

    def __init__(self) -> None:
        self._facts: dict[str, tuple[datetime, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def get(self, ctx: Context, elevator_id: str) -> dict[str, Any] | None:
        now = ctx.clock.now()
        with self._lock:
            kept = self._facts.get(elevator_id)
        if kept is not None and now < kept[0]:
            return kept[1]
        record = ctx.store.get_elevator(elevator_id)
        facts = None if record is None else _facts(ctx, record, now)
        with self._lock:
            if len(self._facts) >= _FACTS_KEPT:
                self._facts = {e: kept for e, kept in self._facts.items() if now < kept[0]}
            self._facts[elevator_id] = (now + timedelta(seconds=FACTS_TTL_S), facts)
        return facts

    def forget(self, elevator_id: str) -> None:
        with self._lock:
            self._facts.pop(elevator_id, None)


def _render(
    request: Request, ctx: Context, elevator_id: str, status: int = 200, **values: Any
) -> Response:
    chosen = request.query_params.get("lang")
    lang = chosen if chosen in LANGUAGES else language(request)
    cache: FactsCache = request.app.state.public_facts
    page = cache.get(ctx, elevator_id) if ELEVATOR_ID_RE.fullmatch(elevator_id) else None
    if page is None:
        status, page = 404, {}
    t = PUBLIC_STRINGS[lang]
    response = _templates.TemplateResponse(
        request,
        "public.html",
        {"lang": lang, "t": t, "other_lang": next(c for c in LANGUAGES if c != lang)}
        | {"elevator_id": elevator_id, "found": bool(page), "problems": PROBLEMS}
        | {"note_max": NOTE_MAX_CHARS, "error": None, "chosen": None, "note": ""}
        | page
        | values,
        status_code=status,
        headers=_HEADERS,
    )
    if chosen in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/",
            secure=secure_cookies(request),
        )  # fmt: skip
    return response


def _facts(ctx: Context, record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the page says about the elevator, and nothing else."""
    elevator_id = record["elevator_id"]
    incidents = [i for i in ctx.store.open_incidents_of(elevator_id) if not i.drill]
    live = ctx.live(elevator_id)
    frame = live.get("last_frame")
    if incidents:
        status = "incident"
    elif live.get("online") is False or (frame and frame["body"]["mode"] == "out_of_service"):
        status = "out_of_service"
    elif live.get("online") or frame:
        status = "in_service"
    else:
        status = "no_data"
    return {
        "record": record,
        "status": status,
        "maintenance_due": bool(maintenance_overdue([record], (), now, ctx.timezone)),
        "notice": _current_notice(ctx.store.outage_notices(elevator_id), status, now, ctx.timezone),
    }


def _current_notice(
    notices: list[Notice], status: str, now: datetime, zone: ZoneInfo
) -> dict[str, str] | None:
    """The newest notice, unless the elevator is back in service and its announced return
    has passed (or none was announced)."""
    posted = [n for n in notices if n.posted_at <= now]
    if not posted:
        return None
    notice = posted[-1]
    back = notice.expected_return_at
    if status == "in_service" and (back is None or back <= now):
        return None
    return {
        "reason": notice.reason,
        "expected_return": back.astimezone(zone).strftime("%Y-%m-%d %H:%M") if back else "",
    }


async def _form(request: Request) -> dict[str, str]:
    """The posted form, read no further than MAX_FORM_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _Rejected(413, "error_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Rejected(413, "error_too_large")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise _Rejected(422, "error_malformed")
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
            max_num_fields=4,
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise _Rejected(422, "error_malformed") from None
    if any(len(values) != 1 for values in fields.values()):
        raise _Rejected(422, "error_malformed")
    return {name: values[0] for name, values in fields.items()}


@router.get("/e/{elevator_id}")
def public_page(request: Request, elevator_id: str, ctx: Ctx, sent: bool = False) -> Response:
    """The page; 429 (a line of text, no lookup) for a client past VIEWS_PER_MINUTE."""
    views: ClientLimiter = request.app.state.public_views
    client, now = client_key(request), ctx.clock.now()
    if not views.take(client, now).allowed:
        wait = max(1, views.retry_after_s(client, now))
        return Response(
            "请求过于频繁，请稍后再试。 Too many requests: please try again shortly.\n",
            status_code=429,
            media_type="text/plain; charset=utf-8",
            headers=_HEADERS | {"Retry-After": str(wait)},
        )
    return _render(request, ctx, elevator_id, sent=sent)


@router.post("/e/{elevator_id}/report")
async def public_report(request: Request, elevator_id: str, ctx: Ctx) -> Response:
    """A passer-by's report: 303 back to the page on success; the page with the reason
    otherwise (413 too large, 422 unreadable, 429 too many from this client)."""
    try:
        form, rejected = await _form(request), None
    except _Rejected as exc:
        form, rejected = {}, exc
    # The store is blocking I/O: off the event loop.
    return await run_in_threadpool(
        _take_report, request, ctx, elevator_id, client_key(request), form, rejected
    )


def _take_report(
    request: Request,
    ctx: Context,
    elevator_id: str,
    client: str,
    form: dict[str, str],
    rejected: _Rejected | None,
) -> Response:
    desk: CitizenDesk = request.app.state.citizen_desk
    now = ctx.clock.now()
    if not desk.allow(client, now):
        response = _render(request, ctx, elevator_id, 429, error="error_rate")
        response.headers["Retry-After"] = "60"
        return response
    problem, note = form.get("problem"), form.get("note", "")
    if rejected is None and problem not in PROBLEMS:
        rejected = _Rejected(422, "error_problem")
    if rejected is None and len(note) > NOTE_MAX_CHARS:
        rejected = _Rejected(422, "error_note")
    if rejected is not None:
        return _render(
            request, ctx, elevator_id, rejected.status, error=rejected.key, chosen=problem,
            note=note,
        )  # fmt: skip
    if ELEVATOR_ID_RE.fullmatch(elevator_id) is None or ctx.store.get_elevator(elevator_id) is None:
        return _render(request, ctx, elevator_id)  # the 404 page
    # One line of printable text for the dispatchers' timeline.
    one_line = " ".join("".join(c if c.isprintable() else " " for c in note).split())
    desk.report(elevator_id, str(problem), one_line or None, now)
    request.app.state.public_facts.forget(elevator_id)
    return RedirectResponse(f"/e/{elevator_id}?sent=1", status_code=303)

"""The dispatch console's pages: server-rendered shells whose scripts call the JSON API.

Pages are identified by the token cookie `login` sets (see `gateway.api.auth`); the role
decides which pages open and whether action buttons are drawn (the API refuses the actions
of other roles anyway).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from gateway.api.auth import (
    ANY_ROLE,
    CSRF_HEADER,
    ROLE_ADMIN,
    ROLE_DISPATCHER,
    ROLE_REGULATOR,
    TOKEN_COOKIE,
    Caller,
    FailureGuard,
    TooManyFailures,
    guarded_identify,
)
from gateway.api.clients import client_key
from gateway.api.deps import Context
from gateway.frames import ELEVATOR_ID_RE
from gateway.incidents.model import RESOLUTIONS
from gateway.reports import SECTIONS, PeriodError, build, gather, resolve_period
from gateway.reports.bulletin import bulletin
from gateway.reports.bulletin_html import article
from gateway.web.strings import LANGUAGES, STRINGS

_HERE: Final = Path(__file__).parent
LANG_COOKIE: Final = "lang"
_MAX_FORM_BYTES: Final = 4096
_HOME: Final = {ROLE_DISPATCHER: "/board", ROLE_REGULATOR: "/regulator", ROLE_ADMIN: "/fleet"}
# Where `next` may send a caller after login: our own pages only (no open redirect).
_PAGE_PATH: Final = re.compile(rf"/(board|fleet|regulator|docs|elevators/{ELEVATOR_ID_RE.pattern})")

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
_templates = Jinja2Templates(directory=_HERE / "templates")


def language(request: Request) -> str:
    """The language cookie's choice, else the browser's preference (Chinese or English)."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return "zh" if "zh" in request.headers.get("accept-language", "").lower() else "en"


def _render(
    request: Request,
    template: str,
    caller: Caller | None,
    status_code: int = 200,
    **values: Any,
) -> Response:
    lang = language(request)
    page = {
        "lang": lang,
        "t": STRINGS[lang],
        "caller": caller,
        "can_act": caller is not None and caller.role == ROLE_DISPATCHER,
        "csrf_header": CSRF_HEADER,
        "lang_cookie": LANG_COOKIE,
        "other_lang": next(code for code in LANGUAGES if code != lang),
    }
    response = _templates.TemplateResponse(
        request, template, page | values, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def secure_cookies(request: Request) -> bool:
    """Cookies only over HTTPS: when this request came over it, or the public address is
    https (TLS ends at a reverse proxy, which talks plain HTTP to us)."""
    return request.url.scheme == "https" or request.app.state.https


def _too_many(request: Request, exc: TooManyFailures, next: str = "") -> Response:
    response = _render(
        request, "login.html", None, status_code=429, next=next, failed=False, too_many=True
    )
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def _to_login(request: Request, target: str) -> Response:
    """To the sign-in page; a cookie that opened nothing is dropped on the way, so the
    console's next requests do not count as failed sign-ins again."""
    response = RedirectResponse(target, status_code=303)
    if request.cookies.get(TOKEN_COOKIE):
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _page(request: Request, template: str, roles: tuple[str, ...], **values: Any) -> Response:
    """The page for a caller with one of `roles`; others are sent to log in or refused."""
    try:
        caller = guarded_identify(request)
    except TooManyFailures as exc:
        return _too_many(request, exc)
    if caller is None:
        return _to_login(request, f"/login?next={quote(request.url.path)}")
    if caller.role not in roles:
        return _render(request, "denied.html", caller, status_code=403)
    return _render(request, template, caller, **values)


@router.get("/")
def home(request: Request) -> Response:
    try:
        caller = guarded_identify(request)
    except TooManyFailures as exc:
        return _too_many(request, exc)
    if caller is None:
        return _to_login(request, "/login")
    return RedirectResponse(_HOME[caller.role], status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    return _render(request, "login.html", None, next=next, failed=False, too_many=False)


@router.post("/login")
async def login(request: Request) -> Response:
    """Form post of `token` (and `next`): sets the token cookie and goes to the role's page.
    A client past its failed sign-ins gets 429, whatever it sends (see `gateway.api.auth`)."""
    form = parse_qs((await request.body())[:_MAX_FORM_BYTES].decode(errors="replace"))
    token = form.get("token", [""])[0].strip()
    target = form.get("next", [""])[0]
    guard: FailureGuard = request.app.state.auth_failures
    client, now = client_key(request), request.app.state.context.clock.now()
    try:
        guard.check(client, now)
    except TooManyFailures as exc:
        return _too_many(request, exc, target)
    caller = request.app.state.tokens.identify(token) if token else None
    if caller is None:
        guard.failed(client, now)
        return _render(
            request, "login.html", None, status_code=401, next=target, failed=True, too_many=False
        )
    if _PAGE_PATH.fullmatch(target) is None:
        target = _HOME[caller.role]
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/board")
def board(request: Request) -> Response:
    return _page(request, "board.html", ANY_ROLE, resolutions=RESOLUTIONS)


@router.get("/fleet")
def fleet(request: Request) -> Response:
    return _page(request, "fleet.html", ANY_ROLE)


@router.get("/elevators/{elevator_id}")
def elevator(request: Request, elevator_id: str) -> Response:
    if ELEVATOR_ID_RE.fullmatch(elevator_id) is None:
        return Response("unknown elevator id", status_code=404)
    return _page(request, "elevator.html", ANY_ROLE, elevator_id=elevator_id)


@router.get("/regulator")
def regulator(request: Request, since: str = "", until: str = "") -> Response:
    """The bulletin of the period asked for, drawn here as `elevator-gateway report --format
    html` draws it (the same article), and every section's CSV below it. The bulletin is
    computed only once the caller is known to be allowed to see it."""
    query = urlencode({k: v for k, v in (("since", since), ("until", until)) if v})
    return _page(
        request,
        "regulator.html",
        (ROLE_REGULATOR, ROLE_ADMIN),
        sections=list(SECTIONS),
        since=since,
        until=until,
        query=query,
        bulletin=lambda: _bulletin(request.app.state.context, since or None, until or None),
    )


def _bulletin(ctx: Context, since: str | None, until: str | None) -> tuple[Markup, str]:
    """(the bulletin's HTML, or an error message naming the bad field)."""
    try:
        start, end, as_of = resolve_period(since, until, ctx.timezone, ctx.clock.now())
    except PeriodError as exc:
        return Markup(""), str(exc)
    inputs = gather(ctx.store, start, end, as_of)
    lists = build(inputs, start, end, as_of, ctx.timezone, "maintenance_company")
    made = bulletin(inputs.incidents, inputs.registry, start, end, as_of)
    return Markup(article(made, lists, ctx.timezone, ctx.arrival_limit_s)), ""


@router.get("/docs")
def docs(request: Request) -> Response:
    """The API's description, rendered here from the OpenAPI document: no script and
    nothing fetched from elsewhere, so it works on a closed LAN and under the CSP. Behind a
    login unless `public_docs`."""
    operations = [
        {
            "method": method.upper(),
            "path": path,
            "summary": op.get("summary", ""),
            "description": op.get("description", ""),
            "parameters": [p["name"] for p in op.get("parameters", [])],
            "body": "requestBody" in op,
        }
        for path, methods in request.app.openapi()["paths"].items()
        for method, op in methods.items()
    ]
    if request.app.state.public_docs:
        return _render(request, "docs.html", None, operations=operations)
    return _page(request, "docs.html", ANY_ROLE, operations=operations)

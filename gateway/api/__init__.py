"""The HTTP API (contract §3): FastAPI app, OpenAPI at /openapi.json and /docs (behind a
login unless `public_docs`), Prometheus at /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api import elevators, events, fleet, incidents, reports
from gateway.api.auth import ANY_ROLE, FailureGuard, TokenBook, require
from gateway.api.clients import ClientLimiter
from gateway.api.deps import Context
from gateway.api.headers import SecurityHeaders
from gateway.citizen import CitizenDesk
from gateway.incidents.service import NotFound
from gateway.incidents.state import BeforeOpening, TransitionError
from gateway.web import pages, public


def _field_message(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        ".".join(str(p) for p in e.get("loc", ()) if p != "body") + f": {e.get('msg', '')}"
        for e in errors
    )


def create_app(
    context: Context, tokens: TokenBook, *, public_docs: bool = False, https: bool = False
) -> FastAPI:
    """The app; `tokens` may be rotated while it runs (`TokenBook.replace`). `https`: the
    public address is https, so cookies are Secure even when TLS ends at a proxy."""
    app = FastAPI(
        title="Elevator telemetry and rescue gateway",
        version="0.1.0",
        description="Contract §3: incidents, registry, response-time metrics.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SecurityHeaders)
    app.state.context = context
    app.state.tokens = tokens
    app.state.auth_failures = FailureGuard()
    app.state.public_docs = public_docs
    app.state.https = https
    app.state.citizen_desk = CitizenDesk(context.service, context.store)
    app.state.public_views = ClientLimiter(public.VIEWS_PER_MINUTE, public.VIEWS_BURST)
    app.state.public_facts = public.FactsCache()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [dict(e) for e in exc.errors()]
        for e in errors:
            e.pop("input", None)
            e.pop("ctx", None)
        return JSONResponse({"message": _field_message(errors), "detail": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"message": f"not found: {exc}"}, status_code=404)

    @app.exception_handler(BeforeOpening)
    async def _before_opening(_r: Request, exc: BeforeOpening) -> JSONResponse:
        detail = [{"loc": ["body", "at"], "msg": str(exc), "type": "value_error"}]
        return JSONResponse({"message": f"at: {exc}", "detail": detail}, status_code=422)

    @app.exception_handler(TransitionError)
    async def _conflict(_r: Request, exc: TransitionError) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=409)

    @app.get("/api/health", tags=["health"])
    def get_health() -> dict[str, object]:
        return context.health()

    openapi_readers = [] if public_docs else [Depends(require(*ANY_ROLE))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=openapi_readers)
    def get_openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(incidents.router)
    app.include_router(elevators.router)
    app.include_router(reports.router)
    app.include_router(events.router)
    app.include_router(fleet.router)
    app.include_router(pages.router)
    app.include_router(public.router)
    return app

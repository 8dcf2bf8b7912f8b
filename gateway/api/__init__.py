"""The HTTP API (contract §3): FastAPI app, OpenAPI at /docs, Prometheus at /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api import elevators, events, fleet, incidents, reports
from gateway.api.auth import TokenBook
from gateway.api.deps import Context
from gateway.citizen import CitizenDesk
from gateway.incidents.service import NotFound
from gateway.incidents.state import BeforeOpening, TransitionError
from gateway.web import pages, public


def _field_message(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        ".".join(str(p) for p in e.get("loc", ()) if p != "body") + f": {e.get('msg', '')}"
        for e in errors
    )


def create_app(context: Context, tokens: dict[str, str]) -> FastAPI:
    app = FastAPI(
        title="Elevator telemetry and rescue gateway",
        version="0.1.0",
        description="Contract §3: incidents, registry, response-time metrics.",
    )
    app.state.context = context
    app.state.tokens = TokenBook(tokens)
    app.state.citizen_desk = CitizenDesk(context.service, context.store)

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

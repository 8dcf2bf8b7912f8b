"""The HTTP side: health and Prometheus metrics (the contract's endpoints grow here)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthCheck = Callable[[], dict[str, object]]


def create_app(health: HealthCheck) -> FastAPI:
    app = FastAPI(title="Elevator telemetry and rescue gateway", version="0.1.0")

    @app.get("/api/health")
    def get_health() -> dict[str, object]:
        return health()

    @app.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app

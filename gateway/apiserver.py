"""The HTTP API alone (`elevator-gateway api`): stateless, on the store the gateways share.

No MQTT session and no ticker: what an action publishes goes into the shared outbox, which
the gateways deliver, and the SLA clocks are fired by the gateways' tickers, which claim each
due incident in the store (see `Store.fire_due`). So any number of these can run behind a
load balancer, apart from the ingest processes.
"""

from __future__ import annotations

import threading
from typing import Any, Self
from zoneinfo import ZoneInfo

import structlog
import uvicorn

from gateway.api.auth import TokenBook
from gateway.api.deps import Context
from gateway.app import policy, serve_http
from gateway.clock import Clock, RealClock
from gateway.incidents.service import IncidentService
from gateway.registry import RegistryCache
from gateway.settings import Settings, redact_url, tokens_of
from gateway.store import open_store

log = structlog.get_logger(__name__)


class ApiServer:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or RealClock()
        self._http: tuple[uvicorn.Server, threading.Thread] | None = None
        self.tokens = TokenBook(tokens_of(settings))  # rotated on SIGHUP, see the CLI

    def start(self) -> Self:
        s = self.settings
        self.store = open_store(s.store_url)
        registry = RegistryCache()
        registry.load(self.store.all_elevators())
        incidents = IncidentService(self.store, policy(s))
        context = Context(
            self.store,
            incidents,
            self.clock,
            self.health,
            _no_live,
            registry.update,
            ZoneInfo(s.timezone),
            s.arrival_limit_s,
        )
        self._http = serve_http(context, s, self.tokens)
        log.info("api_started", store=redact_url(s.store_url), port=s.http_port)
        return self

    def stop(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.should_exit = True
            thread.join(timeout=10)
        self.store.close()
        log.info("api_stopped")

    def health(self) -> dict[str, object]:
        store = self.store.ping()
        # No broker or time-series connection of its own: those are the gateways' health.
        return {
            "status": "ok" if store else "failing",
            "role": "api",
            "broker": False,
            "tsdb": False,
            "store": store,
        }


def _no_live(_elevator_id: str) -> dict[str, Any]:
    """Live state lives in the ingest gateway that owns the elevator, not here."""
    return {"online": None, "last_frame": None}

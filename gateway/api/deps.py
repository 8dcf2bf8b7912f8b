"""Shared pieces of the routes: the context, field errors, the audit trail."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from gateway.api.auth import Caller
from gateway.clock import Clock
from gateway.incidents.service import IncidentService
from gateway.store import Store

HealthCheck = Callable[[], dict[str, object]]
LiveState = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Context:
    """What the routes need, handed over by the running gateway."""

    store: Store
    service: IncidentService
    clock: Clock
    health: HealthCheck
    live: LiveState
    registry_changed: Callable[[str, dict[str, Any]], None]
    timezone: ZoneInfo  # the deployment's zone: report periods and local dates
    arrival_limit_s: int = 1800  # the default arrival limit, the bulletin's histogram line


def context(request: Request) -> Context:
    return request.app.state.context


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 naming the field, shaped like FastAPI's own."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def audit(ctx: Context, caller: Caller, action: str, target: str, body: Any) -> None:
    ctx.store.add_audit(
        ctx.clock.now(), caller.role, caller.token_id, action, target, json.dumps(body, default=str)
    )


def not_in_future(ctx: Context, field: str, value: datetime | None) -> datetime:
    """`value`, defaulting to now; a time in the future is refused."""
    now = ctx.clock.now()
    if value is None:
        return now
    if value > now:
        raise invalid(field, "may not be in the future")
    return value.astimezone(UTC)  # stored and published in UTC, whatever offset came in

"""Regulator figures over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime

from gateway.api.auth import ROLE_ADMIN, ROLE_REGULATOR, Caller, require
from gateway.api.deps import Context, context
from gateway.reports import GroupBy, response_times

router = APIRouter(prefix="/api/metrics", tags=["reports"])


@router.get("/response-times")
def get_response_times(
    ctx: Annotated[Context, Depends(context)],
    _caller: Annotated[Caller, Depends(require(ROLE_REGULATOR, ROLE_ADMIN))],
    group_by: GroupBy = "maintenance_company",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> list[dict[str, Any]]:
    """Arrival and acknowledgement figures per group (drills and false alarms excluded)."""
    incidents = ctx.store.list_incidents(state="all", since=since, until=until, limit=1_000_000)
    return response_times(incidents, group_by)

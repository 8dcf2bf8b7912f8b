"""Regulator figures and compliance lists over HTTP, as JSON or CSV; outage notices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.api.auth import ROLE_ADMIN, ROLE_DISPATCHER, ROLE_REGULATOR, Caller, require
from gateway.api.deps import Context, audit, context, invalid, not_in_future
from gateway.frames import ELEVATOR_ID_RE
from gateway.incidents.service import NotFound
from gateway.reports import (
    SECTIONS,
    GroupBy,
    GroupFigures,
    Notice,
    PeriodError,
    build,
    gather,
    resolve_period,
    response_times,
    to_csv,
    to_json,
    zone_named,
)

router = APIRouter(tags=["reports"])

Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Caller, Depends(require(ROLE_REGULATOR, ROLE_ADMIN))]
# The API is not handed the settings, so the zone is a parameter with the settings' default.
Bound = Annotated[
    str | None, Query(description="YYYY-MM-DD (local midnight) or ISO 8601; until exclusive")
]


@router.get("/api/metrics/response-times")
def get_response_times(
    ctx: Ctx,
    _caller: Reader,
    group_by: GroupBy = "maintenance_company",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> list[GroupFigures]:
    """Arrival and acknowledgement figures per group (drills and false alarms excluded)."""
    incidents = ctx.store.list_incidents(state="all", since=since, until=until, limit=1_000_000)
    return response_times(incidents, group_by, ctx.store.all_elevators())


def _report(
    ctx: Context, since: str | None, until: str | None, group_by: GroupBy, timezone: str | None
) -> dict[str, list[Any]]:
    try:
        zone = zone_named(timezone) if timezone else ctx.timezone
        start, end, as_of = resolve_period(since, until, zone, ctx.clock.now())
    except PeriodError as exc:
        raise invalid(exc.field, exc.message) from None
    return build(gather(ctx.store, start, end, as_of), start, end, as_of, zone, group_by)


@router.get("/api/reports")
def get_reports(
    ctx: Ctx,
    _caller: Reader,
    since: Bound = None,
    until: Bound = None,
    group_by: GroupBy = "maintenance_company",
    timezone: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every report section at once (the names are those of `/api/reports/{name}`)."""
    return {
        name: to_json(rows) for name, rows in _report(ctx, since, until, group_by, timezone).items()
    }


@router.get("/api/reports/{name}", responses={200: {"content": {"text/csv": {}}}})
def get_report(
    name: str,
    ctx: Ctx,
    _caller: Reader,
    since: Bound = None,
    until: Bound = None,
    group_by: GroupBy = "maintenance_company",
    timezone: str | None = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """One section, e.g. `blacklist-candidates`; `name.csv` or `?format=csv` for CSV."""
    if name.endswith(".csv"):
        name, fmt = name.removesuffix(".csv"), "csv"
    if name not in SECTIONS:
        raise NotFound(f"report {name} (known: {', '.join(SECTIONS)})")
    rows = _report(ctx, since, until, group_by, timezone)[name]
    if fmt == "csv":
        return Response(
            to_csv(SECTIONS[name], rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return to_json(rows)


class NoticeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    elevator_id: str = Field(pattern=f"^{ELEVATOR_ID_RE.pattern}$")
    reason: str = Field(min_length=1, max_length=2000)
    posted_at: AwareDatetime | None = None
    expected_return_at: AwareDatetime | None = None


@router.post("/api/outage-notices", status_code=201)
def post_outage_notice(
    body: NoticeBody,
    ctx: Ctx,
    caller: Annotated[Caller, Depends(require(ROLE_DISPATCHER, ROLE_ADMIN))],
) -> dict[str, Any]:
    """Record the public notice of an outage (its reason and expected return), which takes
    the elevator off the `outages-without-notice` list."""
    notice = Notice(
        body.elevator_id,
        not_in_future(ctx, "posted_at", body.posted_at),
        body.reason,
        body.expected_return_at,
    )
    notice_id = ctx.store.add_outage_notice(notice, ctx.clock.now(), caller.name)
    audit(ctx, caller, "outage_notice", body.elevator_id, body.model_dump(mode="json"))
    return {"id": notice_id, **to_json([notice])[0]}

"""Incident routes: read (every role), act (dispatchers)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.api.auth import ANY_ROLE, ROLE_DISPATCHER, Caller, require
from gateway.api.deps import Context, audit, context, invalid, not_in_future
from gateway.frames import ElevatorId
from gateway.incidents.model import RESOLUTIONS, to_json

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

Reader = Annotated[Caller, Depends(require(*ANY_ROLE))]
Dispatcher = Annotated[Caller, Depends(require(ROLE_DISPATCHER))]
Ctx = Annotated[Context, Depends(context)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportBody(_Body):
    elevator_id: ElevatorId
    kind: Annotated[str, Field(pattern=r"^(entrapment|[A-Z][A-Z0-9_]{1,63})$")]
    source: Literal["phone", "citizen", "property", "other"]
    reported_at: AwareDatetime | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None
    drill: bool = False  # addition: an exercise, excluded from every figure


class AcknowledgeBody(_Body):
    by: Text


class DispatchBody(_Body):
    crew_id: Text
    maintenance_company: Text | None = None


class ArrivalBody(_Body):
    crew_id: Text
    at: AwareDatetime | None = None


class ReleaseBody(_Body):
    at: AwareDatetime | None = None


class CloseBody(_Body):
    resolution: Literal[RESOLUTIONS]  # type: ignore[valid-type]
    note: Annotated[str, Field(max_length=2000)] | None = None


class RescueDetailsBody(_Body):
    people_trapped: Annotated[int, Field(ge=0, le=1000)] | None = None
    rescue_level: Literal[1, 2, 3] | None = None  # maintenance unit, rescue station, fire


class RegulatorReportBody(_Body):
    at: AwareDatetime | None = None


@router.get("")
def list_incidents(
    ctx: Ctx,
    _caller: Reader,
    state: Literal["open", "closed", "all"] = "open",
    elevator_id: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    include: Literal["children"] | None = None,
) -> list[dict[str, Any]]:
    """Incidents, newest first: those with no parent, or all with `include=children`."""
    found = ctx.store.list_incidents(
        state=state, elevator_id=elevator_id, since=since, until=until, limit=limit,
        children=include == "children",
    )  # fmt: skip
    return [to_json(i) for i in found]


@router.get("/{incident_id}")
def get_incident(incident_id: str, ctx: Ctx, _caller: Reader) -> dict[str, Any]:
    return to_json(ctx.service.get(incident_id))


@router.get("/{incident_id}/frames")
def get_black_box(incident_id: str, ctx: Ctx, _caller: Reader) -> list[dict[str, Any]]:
    """The black box: frames from 120 s before the incident opened and during it."""
    ctx.service.get(incident_id)
    return [
        {
            "received_at": f["received_at"].isoformat(),
            "kind": f["kind"],
            "body": json.loads(f["body"]),
        }
        for f in ctx.store.incident_frames(incident_id)
    ]


@router.post("", status_code=201)
def report_incident(
    body: ReportBody, response: Response, ctx: Ctx, caller: Dispatcher
) -> dict[str, Any]:
    """A person reports an entrapment or fault; joins an open incident of that elevator and
    kind (200) or opens one (201). The earlier time starts the clock. With `drill`, an
    exercise: its own incident, run like any other, left out of every figure."""
    now = ctx.clock.now()
    reported_at = not_in_future(ctx, "reported_at", body.reported_at)
    incident, created = ctx.service.report(
        elevator_id=body.elevator_id, kind=body.kind, source=body.source,
        reported_at=reported_at, note=body.note, by=caller.name, now=now, drill=body.drill,
    )  # fmt: skip
    audit(ctx, caller, "report", incident.id, body.model_dump(mode="json"))
    if not created:
        response.status_code = 200
    return to_json(incident)


@router.post("/{incident_id}/acknowledge")
def acknowledge(
    incident_id: str, body: AcknowledgeBody, ctx: Ctx, caller: Dispatcher
) -> dict[str, Any]:
    incident = ctx.service.acknowledge(incident_id, body.by, ctx.clock.now())
    audit(ctx, caller, "acknowledge", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/dispatch")
def dispatch(incident_id: str, body: DispatchBody, ctx: Ctx, caller: Dispatcher) -> dict[str, Any]:
    incident = ctx.service.dispatch(
        incident_id, body.crew_id, body.maintenance_company, caller.name, ctx.clock.now()
    )
    audit(ctx, caller, "dispatch", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/arrival")
def arrival(incident_id: str, body: ArrivalBody, ctx: Ctx, caller: Dispatcher) -> dict[str, Any]:
    at = not_in_future(ctx, "at", body.at)
    incident = ctx.service.arrival(incident_id, body.crew_id, at, caller.name, ctx.clock.now())
    audit(ctx, caller, "arrival", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/release")
def release(incident_id: str, body: ReleaseBody, ctx: Ctx, caller: Dispatcher) -> dict[str, Any]:
    at = not_in_future(ctx, "at", body.at)
    incident = ctx.service.release(incident_id, at, caller.name, ctx.clock.now())
    audit(ctx, caller, "release", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/close")
def close(incident_id: str, body: CloseBody, ctx: Ctx, caller: Dispatcher) -> dict[str, Any]:
    incident = ctx.service.close(
        incident_id, body.resolution, body.note, caller.name, ctx.clock.now()
    )
    audit(ctx, caller, "close", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/rescue-details")
def rescue_details(
    incident_id: str, body: RescueDetailsBody, ctx: Ctx, caller: Dispatcher
) -> dict[str, Any]:
    """Record the people trapped and the rescue level reached (1 maintenance unit, 2 rescue
    station, 3 fire/police); allowed after the close too."""
    if body.people_trapped is None and body.rescue_level is None:
        raise invalid("people_trapped", "give people_trapped or rescue_level")
    incident = ctx.service.rescue_details(
        incident_id, body.people_trapped, body.rescue_level, caller.name, ctx.clock.now()
    )
    audit(ctx, caller, "rescue_details", incident_id, body.model_dump(mode="json"))
    return to_json(incident)


@router.post("/{incident_id}/regulator-report")
def regulator_report(
    incident_id: str, body: RegulatorReportBody, ctx: Ctx, caller: Dispatcher
) -> dict[str, Any]:
    """Record that an accident was reported to the regulator (the 1-hour clock)."""
    at = not_in_future(ctx, "at", body.at)
    incident = ctx.service.regulator_report(incident_id, at, caller.name, ctx.clock.now())
    audit(ctx, caller, "regulator_report", incident_id, body.model_dump(mode="json"))
    return to_json(incident)

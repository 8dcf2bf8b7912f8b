"""The registry: one elevator, one file (admins write, every role reads)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.api.auth import ANY_ROLE, ROLE_ADMIN, Caller, require
from gateway.api.deps import Context, audit, context, not_in_future
from gateway.frames import ELEVATOR_ID_RE
from gateway.incidents.model import iso_utc, main_incident, to_json
from gateway.incidents.service import NotFound
from gateway.reports import (
    TELEMETRY_LOOKBACK,
    FileEntry,
    alarm_tests_missing,
    backed,
    elevator_file,
    maintenance_sessions,
    record_window,
    to_csv,
)
from gateway.reports import to_json as to_rows
from gateway.store.records import MaintenanceRecord

router = APIRouter(prefix="/api/elevators", tags=["registry"])

_EVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # the file reads back to the first record

ElevatorIdPath = Annotated[str, Path(pattern=f"^{ELEVATOR_ID_RE.pattern}$")]
Ctx = Annotated[Context, Depends(context)]
# No control characters: a line break in a district or company name cannot be carried by a
# time-series tag (and has no place on a page either).
Short = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
# The maintenance company's 24-hour line, printed on the public page as a tel: link.
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 ()-]{2,30}$")]


class RegistryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: Short | None = None
    district: Short | None = None
    address: Short | None = None
    maintenance_company: Short | None = None
    maintenance_phone: Phone | None = None
    use_unit: Short | None = None
    inspection_due: dt.date | None = None
    last_maintenance: dt.date | None = None


@router.get("/{elevator_id}")
def get_elevator(
    elevator_id: ElevatorIdPath, ctx: Ctx, _caller: Annotated[Caller, Depends(require(*ANY_ROLE))]
) -> dict[str, Any]:
    """Registry record plus live state (last frame, online, open incidents) and the alarm
    device's last self-test (`ALARM_TEST`; overdue after 72 h)."""
    record = ctx.store.get_elevator(elevator_id)
    live = ctx.live(elevator_id)
    known = (
        record is not None or live.get("last_frame") is not None or live.get("online") is not None
    )
    if not known and not ctx.store.list_incidents(elevator_id=elevator_id, limit=1):
        raise NotFound(elevator_id)
    registry = RegistryRecord.model_validate(
        {k: v for k, v in (record or {}).items() if k in RegistryRecord.model_fields}
    ).model_dump(mode="json")
    incidents = ctx.store.open_incidents_of(elevator_id)
    now = ctx.clock.now()
    tests = [
        e
        for e in ctx.store.episodes(now - TELEMETRY_LOOKBACK, now, elevator_id)
        if e.kind == "alarm_test"
    ]
    last_test = max((e.started_at for e in tests if e.started_at <= now), default=None)
    return {
        "elevator_id": elevator_id,
        "registered": record is not None,
        **registry,
        **live,
        "open_incident": to_json(main) if (main := main_incident(incidents)) else None,
        "open_incidents": [i.id for i in incidents],
        # additions
        "last_alarm_test_at": iso_utc(last_test),
        "alarm_test_overdue": bool(alarm_tests_missing([{"elevator_id": elevator_id}], tests, now)),
    }


class MaintenanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = None  # when the visit began; default now
    company: Short = Field(min_length=1)
    technician: Short = Field(min_length=1)
    items: list[Short] = Field(default_factory=list, max_length=100)
    duration_min: int = Field(ge=1, le=24 * 60)
    note: Annotated[str, Field(max_length=2000)] | None = None


@router.post("/{elevator_id}/maintenance", status_code=201)
def post_maintenance(
    elevator_id: ElevatorIdPath,
    body: MaintenanceBody,
    ctx: Ctx,
    caller: Annotated[Caller, Depends(require(ROLE_ADMIN))],
) -> dict[str, Any]:
    """Record a maintenance visit as the maintenance unit reports it. `telemetry_backed`
    says whether a telemetry session of the elevator overlaps it (give or take an hour);
    one that none backs is listed in `maintenance-reported-only`."""
    record = MaintenanceRecord(
        elevator_id, not_in_future(ctx, "at", body.at), body.company, body.technician,
        tuple(body.items), body.duration_min, body.note,
    )  # fmt: skip
    record_id = ctx.store.add_maintenance_record(record, ctx.clock.now(), caller.name)
    audit(ctx, caller, "maintenance_record", elevator_id, body.model_dump(mode="json"))
    return {"id": record_id, **to_rows([record])[0], "telemetry_backed": _backed(ctx, record)}


def _backed(ctx: Context, record: MaintenanceRecord) -> bool:
    episodes = ctx.store.episodes(*record_window(record), record.elevator_id)
    return backed(record, maintenance_sessions(episodes))


@router.get("/{elevator_id}/file", responses={200: {"content": {"text/csv": {}}}})
def get_file(
    elevator_id: ElevatorIdPath,
    ctx: Ctx,
    _caller: Annotated[Caller, Depends(require(*ANY_ROLE))],
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """The elevator's file: its registry record and one timeline of everything recorded of
    it (incidents and their outcome, maintenance records and sessions, inspection sessions,
    outages and their notices, citizens' reports, alarm self-tests), oldest first; kept 5
    years, never pruned. `?format=csv` (or `file.csv`) for the timeline as CSV."""
    store = ctx.store
    entries = elevator_file(
        store.list_incidents(elevator_id=elevator_id, limit=1_000_000),
        store.episodes(_EVER, ctx.clock.now(), elevator_id),
        store.maintenance_records(elevator_id=elevator_id),
        store.outage_notices(elevator_id),
    )
    record = store.get_elevator(elevator_id)
    if record is None and not entries:
        raise NotFound(elevator_id)
    if fmt == "csv":
        return Response(
            to_csv(FileEntry, entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{elevator_id}-file.csv"'},
        )
    registry = {k: v for k, v in (record or {}).items() if k in RegistryRecord.model_fields}
    return {
        "elevator_id": elevator_id,
        "registry": RegistryRecord.model_validate(registry).model_dump(mode="json")
        if record
        else None,
        "entries": to_rows(entries),
    }


@router.get("/{elevator_id}/file.csv", include_in_schema=False)
def get_file_csv(
    elevator_id: ElevatorIdPath,
    ctx: Ctx,
    caller: Annotated[Caller, Depends(require(*ANY_ROLE))],
) -> Any:
    return get_file(elevator_id, ctx, caller, "csv")


@router.put("/{elevator_id}")
def put_elevator(
    elevator_id: ElevatorIdPath,
    body: RegistryRecord,
    response: Response,
    ctx: Ctx,
    caller: Annotated[Caller, Depends(require(ROLE_ADMIN))],
) -> dict[str, Any]:
    created = ctx.store.put_elevator(elevator_id, body.model_dump(), ctx.clock.now())
    ctx.registry_changed(elevator_id, body.model_dump())
    audit(ctx, caller, "registry_put", elevator_id, body.model_dump(mode="json"))
    response.status_code = 201 if created else 200
    return {"elevator_id": elevator_id, **body.model_dump(mode="json")}

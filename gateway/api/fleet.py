"""The fleet at a glance: registered elevators (and any with an open incident) with their
live state, counted, filterable by district and maintenance company."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from gateway.api.auth import ANY_ROLE, Caller, require
from gateway.api.deps import Context, context
from gateway.api.events import MAX_OPEN

router = APIRouter(prefix="/api", tags=["registry"])


def _row(
    elevator_id: str, record: dict[str, Any], live: dict[str, Any], open_ids: list[str]
) -> dict[str, Any]:
    frame = live.get("last_frame")
    body = frame["body"] if frame else {}
    return {
        "elevator_id": elevator_id,
        "site": record.get("site"),
        "district": record.get("district"),
        "address": record.get("address"),
        "maintenance_company": record.get("maintenance_company"),
        "online": live.get("online"),
        "mode": body.get("mode"),
        "floor": body.get("floor"),
        "last_frame_at": frame["received_at"] if frame else None,
        "open_incidents": open_ids,
    }


@router.get("/fleet")
def get_fleet(
    ctx: Annotated[Context, Depends(context)],
    _caller: Annotated[Caller, Depends(require(*ANY_ROLE))],
    district: str | None = None,
    maintenance_company: str | None = None,
) -> dict[str, Any]:
    """`counts` (`elevators`, `online`, `offline`, `online_unknown`, `out_of_service`,
    `with_open_incidents`) and `elevators` after the filters; `districts` and
    `maintenance_companies` list every value known, for the filter choices."""
    registry = {r["elevator_id"]: r for r in ctx.store.all_elevators()}
    open_ids: dict[str, list[str]] = defaultdict(list)
    for incident in ctx.store.list_incidents(state="open", limit=MAX_OPEN):
        open_ids[incident.elevator_id].append(incident.id)
        registry.setdefault(
            incident.elevator_id,
            {"district": incident.district, "maintenance_company": incident.maintenance_company},
        )
    shown = [
        _row(eid, record, ctx.live(eid), open_ids.get(eid, []))
        for eid, record in sorted(registry.items())
        if (district is None or record.get("district") == district)
        and (
            maintenance_company is None or record.get("maintenance_company") == maintenance_company
        )
    ]
    return {
        "counts": {
            "elevators": len(shown),
            "online": sum(r["online"] is True for r in shown),
            "offline": sum(r["online"] is False for r in shown),
            "online_unknown": sum(r["online"] is None for r in shown),
            "out_of_service": sum(r["mode"] == "out_of_service" for r in shown),
            "with_open_incidents": sum(bool(r["open_incidents"]) for r in shown),
        },
        "districts": sorted({r["district"] for r in registry.values() if r.get("district")}),
        "maintenance_companies": sorted(
            {r["maintenance_company"] for r in registry.values() if r.get("maintenance_company")}
        ),
        "elevators": shown,
    }

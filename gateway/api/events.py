"""Server-sent events for the dispatch console: open incidents as they change.

Each stream polls the store once a second and sends the incidents whose `updated_at`
differs from what it last sent (and those that left the open set, i.e. closed), so the
core gains no thread, queue or callback, and several gateway instances sharing a database
all reach every console.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.auth import ANY_ROLE, Caller, require
from gateway.api.deps import Context, context
from gateway.incidents.model import Incident, to_json
from gateway.store import Store

router = APIRouter(prefix="/api", tags=["events"])

POLL_S: Final = 1.0
# A stream ends after this many polls and the browser's EventSource reconnects (after
# `retry`), starting again from a snapshot: so no response is endless (server shutdown would
# wait on it) and a console never drifts from the store for longer than one stream.
POLLS_PER_STREAM: Final = 20
MAX_OPEN: Final = 5000
_REGISTRY_SHOWN: Final = ("site", "district", "address", "maintenance_company")


def board_item(store: Store, incident: Incident) -> dict[str, Any]:
    """An incident as the board shows it: its JSON plus where the elevator is."""
    record = store.get_elevator(incident.elevator_id) or {}
    return {"incident": to_json(incident), "elevator": {k: record.get(k) for k in _REGISTRY_SHOWN}}


class _Changes:
    """What one stream has sent so far: each open incident's `updated_at`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sent: dict[str, datetime] = {}

    def __call__(self) -> list[dict[str, Any]]:
        current = {i.id: i for i in self._store.list_incidents(state="open", limit=MAX_OPEN)}
        changed = [i for i in current.values() if self._sent.get(i.id) != i.updated_at]
        left = (self._store.get_incident(gone) for gone in self._sent.keys() - current.keys())
        changed += [i for i in left if i is not None]
        self._sent = {i.id: i.updated_at for i in current.values()}
        return [board_item(self._store, i) for i in changed]


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(ctx: Context) -> AsyncIterator[str]:
    changes = _Changes(ctx.store)
    yield f"retry: {int(POLL_S * 1000)}\n\n"
    # The clock is the gateway's (tests and the demo scale it): the page counts down from it.
    items = await run_in_threadpool(changes)
    yield _event("snapshot", {"now": ctx.clock.now().isoformat(), "items": items})
    for _ in range(POLLS_PER_STREAM):
        await asyncio.sleep(POLL_S)
        for item in await run_in_threadpool(changes):
            yield _event("incident", item)
        yield _event("tick", {"now": ctx.clock.now().isoformat()})


@router.get("/events", response_class=StreamingResponse)
def get_events(
    ctx: Annotated[Context, Depends(context)],
    _caller: Annotated[Caller, Depends(require(*ANY_ROLE))],
) -> StreamingResponse:
    """`text/event-stream`: first `snapshot` (`now` and every open incident), then
    `incident` for each change (closed ones included) and `tick` (`now`) every second."""
    return StreamingResponse(
        _stream(ctx),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

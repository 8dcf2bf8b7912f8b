"""Reports from the public elevator page (the QR code on the car's safety tag).

A report becomes an incident with `source: citizen`: `trapped` opens (or joins) the elevator's
entrapment incident with its full legal clock; anything else is a ticket for the maintenance
company (kind `CITIZEN_REPORT`, class `fault`, no arrival clock) unless the elevator already
has an open incident, which the report then joins. A crowd in the lobby makes one incident:
besides the store's one open incident per elevator and kind, reports of an elevator within
`DEDUP_WINDOW` of the last one taken are folded into it without touching the store, unless
they escalate (a `trapped` after a ticket). Every client gets `REPORTS_PER_MINUTE`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import structlog

from gateway.incidents.model import Incident
from gateway.incidents.service import IncidentService
from gateway.ratelimit import RateLimiter
from gateway.store import Store

log = structlog.get_logger(__name__)

PROBLEMS: Final = ("trapped", "stopped", "unsafe", "other")
TICKET_KIND: Final = "CITIZEN_REPORT"
DEDUP_WINDOW: Final = timedelta(minutes=10)
REPORTS_PER_MINUTE: Final = 20
NOTE_MAX_CHARS: Final = 500
REPORTED_BY: Final = "public page"  # no client address or other personal data is kept
_TICKET_SEVERITY: Final = {"stopped": "minor", "unsafe": "major", "other": "minor"}
_MAX_REMEMBERED: Final = 10_000


@dataclass(frozen=True, slots=True)
class Outcome:
    incident: Incident
    new: bool  # a new incident was opened
    folded: bool  # a duplicate of a recent report: the store was not touched


class CitizenDesk:
    def __init__(
        self,
        service: IncidentService,
        store: Store,
        window: timedelta = DEDUP_WINDOW,
        per_minute: int = REPORTS_PER_MINUTE,
    ) -> None:
        self._service = service
        self._store = store
        self._window = window
        # A token bucket per client: `per_minute` at once, refilled over a minute.
        self._limiter = RateLimiter(rate=per_minute / 60, burst=per_minute)
        self._recent: dict[str, tuple[datetime, str]] = {}  # elevator -> (taken at, incident)
        self._lock = threading.Lock()

    def allow(self, client: str, now: datetime) -> bool:
        """Whether `client` (a keyed hash of its address, never the address) may send
        another report now."""
        now_s = now.timestamp()
        with self._lock:
            decision = self._limiter.check(client, now_s)
        if decision.first_refusal:
            log.warning("public_reports_rate_limited", client_hash=client)
        return decision.allowed

    def report(self, elevator_id: str, problem: str, note: str | None, now: datetime) -> Outcome:
        with self._lock:
            recent = self._recent.get(elevator_id)
            if recent is not None and now - recent[0] < self._window:
                incident = self._store.get_incident(recent[1])
                if (
                    incident is not None
                    and incident.is_open
                    and (problem != "trapped" or incident.kind == "entrapment")
                ):
                    return Outcome(incident, new=False, folded=True)
            kind, severity = self._target(elevator_id, problem)
            incident, new = self._service.report(
                elevator_id=elevator_id, kind=kind, source="citizen", reported_at=now,
                note=problem + (f": {note}" if note else ""), by=REPORTED_BY, now=now,
                severity=severity,
            )  # fmt: skip
            self._remember(elevator_id, now, incident.id)
            return Outcome(incident, new=new, folded=False)

    def _target(self, elevator_id: str, problem: str) -> tuple[str, str | None]:
        """The kind and severity the report is filed under."""
        if problem == "trapped":
            return "entrapment", None
        open_ = [i for i in self._store.open_incidents_of(elevator_id) if not i.drill]
        if open_:
            # Already being handled: the report is news for that incident, not a new ticket.
            joined = next((i for i in open_ if i.kind == "entrapment"), open_[0])
            return joined.kind, joined.severity
        return TICKET_KIND, _TICKET_SEVERITY[problem]

    def _remember(self, elevator_id: str, now: datetime, incident_id: str) -> None:
        if len(self._recent) > _MAX_REMEMBERED:
            self._recent = {
                e: taken for e, taken in self._recent.items() if now - taken[0] < self._window
            }
        self._recent[elevator_id] = (now, incident_id)

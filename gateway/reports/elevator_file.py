"""One elevator, one file: everything recorded of it, as one timeline (oldest first).

Incidents (with their outcome; drills and citizens' reports named as such), the episodes
recorded from the stream (maintenance and inspection sessions, out of service, offline,
power loss, alarm self-tests), maintenance records (flagged when no session backs them) and
outage notices. These are the 5-year records: no retention setting prunes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from gateway.reports._base import HOUR
from gateway.reports.compliance import backed, maintenance_sessions
from gateway.store.records import Episode, Incident, MaintenanceRecord, Notice


@dataclass(frozen=True, slots=True)
class FileEntry:
    at: datetime
    until: datetime | None  # the end of a span (None: a moment, or still going)
    type: str  # incident, drill, citizen_report, maintenance_record, outage_notice, or an
    # episode kind (maintenance, inspection, out_of_service, offline, power_loss, alarm_test)
    summary: str
    flag: str | None  # what a reader should notice: a breach, an unbacked record, ...
    ref: str | None  # the incident's id


def _incident(i: Incident) -> FileEntry:
    kind = "drill" if i.drill else "citizen_report" if i.source == "citizen" else "incident"
    outcome = i.resolution or i.state
    summary = f"{i.kind} ({i.source}): {outcome}"
    if i.arrival_s is not None:
        summary += f", arrival {round(i.arrival_s / 60, 1)} min"
    flag = "sla breached" if i.sla == "breached" else None
    return FileEntry(i.opened_at, i.closed_at, kind, summary, flag, i.id)


def _episode(e: Episode) -> FileEntry:
    if e.kind == "alarm_test":
        return FileEntry(e.started_at, None, e.kind, "alarm device test call", None, None)
    end = e.ended_at
    summary = e.kind.replace("_", " ")
    if end is not None:
        summary += f", {round((end - e.started_at) / HOUR * 60)} min"
    return FileEntry(e.started_at, end, e.kind, summary, None if end else "ongoing", None)


def elevator_file(
    incidents: Iterable[Incident],
    episodes: Iterable[Episode],
    records: Iterable[MaintenanceRecord],
    notices: Iterable[Notice],
) -> list[FileEntry]:
    episodes = list(episodes)
    sessions = maintenance_sessions(episodes)
    entries = [_incident(i) for i in incidents] + [_episode(e) for e in episodes]
    entries += [
        FileEntry(
            r.at,
            None,
            "maintenance_record",
            f"{r.company}, {r.technician}: {', '.join(r.items) or '-'}; {r.duration_min} min"
            + (f" ({r.note})" if r.note else ""),
            None if backed(r, sessions) else "reported only",
            None,
        )
        for r in records
    ]
    entries += [
        FileEntry(n.posted_at, n.expected_return_at, "outage_notice", n.reason, None, None)
        for n in notices
    ]
    return sorted(entries, key=lambda e: (e.at, e.type, e.ref or ""))

"""Regulator figures, as pure functions over stored incidents.

Definitions (also in the README):
- counted: every incident except drills and those closed as `false_alarm`;
- arrived within the limit: `arrived_at` strictly before `deadline_at` (the incident's own,
  so per-district limits apply); `within_limit_pct` is over counted incidents whose arrival
  clock has an outcome (`sla` met or breached);
- acknowledged within the limit: `acknowledged_at` strictly before `ack_deadline_at`, over
  all counted incidents;
- median: the middle value, or the mean of the two middle values; p90: nearest rank
  (the value at position ceil(0.9 n) in ascending order);
- release time: arrival to release, for incidents with both.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from gateway.incidents.model import Incident

GroupBy = Literal["maintenance_company", "district", "elevator_id"]


def counted(incident: Incident) -> bool:
    return not incident.drill and incident.resolution != "false_alarm"


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def response_times(incidents: Iterable[Incident], group_by: GroupBy) -> list[dict[str, Any]]:
    """The contract's `GET /api/metrics/response-times`: one object per group, sorted by group."""
    groups: dict[str | None, list[Incident]] = {}
    for incident in incidents:
        if counted(incident):
            groups.setdefault(getattr(incident, group_by), []).append(incident)
    return [
        _figures(key, members) for key, members in sorted(groups.items(), key=lambda kv: str(kv[0]))
    ]


def _figures(group: str | None, incidents: list[Incident]) -> dict[str, Any]:
    arrivals = [i.arrival_s for i in incidents if i.arrival_s is not None]
    with_outcome = [i for i in incidents if i.sla in ("met", "breached")]
    within = sum(1 for i in with_outcome if i.sla == "met")
    acked_in_time = sum(
        1
        for i in incidents
        if i.acknowledged_at is not None and i.acknowledged_at < i.ack_deadline_at
    )
    releases = [
        (i.released_at - i.arrived_at).total_seconds()
        for i in incidents
        if i.released_at is not None and i.arrived_at is not None and i.released_at >= i.arrived_at
    ]
    return {
        "group": group,
        "incidents": len(incidents),
        "arrived": len(arrivals),
        "within_limit": within,
        "within_limit_pct": _pct(within, len(with_outcome)),
        "arrival_median_s": _median(arrivals),
        "arrival_p90_s": p90(arrivals),
        "arrival_max_s": max(arrivals, default=None),
        "breaches": sum(1 for i in incidents if i.sla == "breached"),
        "acknowledged_within_limit_pct": _pct(acked_in_time, len(incidents)),
        "release_median_s": _median(releases),
    }

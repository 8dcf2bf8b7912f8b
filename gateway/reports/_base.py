"""What every report family shares: counting, grouping, periods and zones."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.store.records import Incident

GroupBy = Literal["maintenance_company", "district", "use_unit", "elevator_id"]
Registry = Sequence[Mapping[str, Any]]  # registry records, as `Store.all_elevators()` gives

YEAR: Final = timedelta(days=365)
# Group names for incidents of elevators the registry does not know, and of registry
# records that leave the field empty: reports name every group, never None.
UNREGISTERED: Final = "unregistered"
NOT_RECORDED: Final = "not recorded"
LABELS: Final = frozenset({UNREGISTERED, NOT_RECORDED})
HOUR: Final = timedelta(hours=1)


def counted(incident: Incident) -> bool:
    """Drills, false alarms and companions (a fault of an entrapment's episode, counted with
    its entrapment: one episode, one incident) are in no figure."""
    return (
        not incident.drill and incident.resolution != "false_alarm" and incident.parent_id is None
    )


def responded_at(incident: Incident) -> datetime | None:
    """When the alarm was answered: the acknowledgement, or the first forward step (dispatch,
    arrival, release, close) if that came first or none was recorded (domain.md)."""
    steps = (
        incident.acknowledged_at,
        incident.dispatched_at,
        incident.arrived_at,
        incident.released_at,
        incident.closed_at,
    )
    return min((at for at in steps if at is not None), default=None)


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def by_id(registry: Registry) -> dict[str, Mapping[str, Any]]:
    return {r["elevator_id"]: r for r in registry}


def registry_group(record: Mapping[str, Any], group_by: GroupBy) -> str:
    return record.get(group_by) or NOT_RECORDED


def group_key(group_by: GroupBy, registry: Registry) -> Callable[[Incident], str]:
    """The incident's own value (as it was when opened), else the registry's current one
    (the use unit is only in the registry), else `UNREGISTERED` for an elevator the registry
    does not know or `NOT_RECORDED` for a record without it: a group is never None."""
    records = by_id(registry)

    def key(incident: Incident) -> str:
        value = None if group_by == "use_unit" else getattr(incident, group_by)
        if value:
            return value
        record = records.get(incident.elevator_id)
        return UNREGISTERED if record is None else registry_group(record, group_by)

    return key


def chronological(incident: Incident) -> tuple[datetime, str]:
    """A stable order whatever order the store returned: opening time, then id."""
    return incident.opened_at, incident.id


def grouped(
    incidents: Iterable[Incident], key: Callable[[Incident], str | None]
) -> list[tuple[str | None, list[Incident]]]:
    groups: dict[str | None, list[Incident]] = {}
    for incident in sorted(incidents, key=chronological):
        groups.setdefault(key(incident), []).append(incident)
    return sorted(groups.items(), key=lambda kv: str(kv[0]))


def first_cluster(
    events: Sequence[tuple[datetime, str]],
    count: int,
    span: timedelta,
    ending_from: datetime | None = None,
) -> list[tuple[datetime, str]] | None:
    """The earliest run of >= `count` events within `span` (inclusive) whose `count`-th event
    is at or after `ending_from`, with every event of its window; None if there is none."""
    ordered = sorted(events)
    for last in range(count - 1, len(ordered)):
        first_at, last_at = ordered[last - count + 1][0], ordered[last][0]
        if last_at - first_at <= span and (ending_from is None or last_at >= ending_from):
            start = last - count + 1
            return [e for e in ordered[start:] if e[0] - first_at <= span]
    return None


def local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


class PeriodError(ValueError):
    """A bad period or zone; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise PeriodError("timezone", f"unknown time zone {name!r}") from None


def _bound(field: str, value: str, zone: ZoneInfo) -> datetime:
    """`YYYY-MM-DD` is local midnight, a time without offset is local time, one with an
    offset is taken as given; the result is UTC."""
    try:
        if len(value) == 10:
            at = datetime.combine(date.fromisoformat(value), time(), zone)
        else:
            at = datetime.fromisoformat(value)
            at = at if at.tzinfo is not None else at.replace(tzinfo=zone)
    except ValueError:
        raise PeriodError(field, "expected YYYY-MM-DD or an ISO 8601 time") from None
    return at.astimezone(UTC)


def resolve_period(
    since: str | None, until: str | None, zone: ZoneInfo, now: datetime
) -> tuple[datetime, datetime, datetime]:
    """(since, until, as_of): `until` defaults to `now` and `since` to 365 days before it;
    `as_of`, the moment the compliance lists describe, is the earlier of `until` and `now`."""
    end = _bound("until", until, zone) if until else now
    start = _bound("since", since, zone) if since else end - YEAR
    if start >= end:
        raise PeriodError("since", "must be before until")
    return start, end, min(end, now)

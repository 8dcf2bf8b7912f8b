"""The legal clocks as pure arithmetic over an incident and `now`.

Definitions (documented in the README): an arrival is within the limit when it is strictly
before `deadline_at`; the breach fires at `deadline_at` itself. Acknowledgement re-alerts
fire at `ack_deadline_at` and every `ack_limit_s` after, one alert covering any periods the
gateway was down for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from gateway.incidents.model import Incident

SEVERITIES: Final = ("minor", "major", "critical")
REPORT_LIMIT: Final = timedelta(hours=1)

DueKind = Literal["warning", "breach", "ack_overdue", "report_overdue"]


@dataclass(frozen=True, slots=True)
class Limits:
    arrival_s: int
    warning_s: int
    ack_s: int


@dataclass(frozen=True, slots=True)
class Clocks:
    deadline_at: datetime
    warning_at: datetime
    ack_deadline_at: datetime
    report_deadline_at: datetime | None


@dataclass(frozen=True, slots=True)
class Due:
    kind: DueKind
    severity: str
    level: int  # 1 for the first alert of its kind; ack re-alerts count up


# Classes whose incidents run the rescue arrival clock (someone may be in the car); faults
# get a crew too, but no legal arrival limit, so no warning or breach alarms.
ARRIVAL_CLASSES: Final = frozenset({"entrapment", "accident"})


def clocks(opened_at: datetime, limits: Limits, incident_class: str) -> Clocks:
    return Clocks(
        deadline_at=opened_at + timedelta(seconds=limits.arrival_s),
        warning_at=opened_at + timedelta(seconds=min(limits.warning_s, limits.arrival_s)),
        ack_deadline_at=opened_at + timedelta(seconds=limits.ack_s),
        report_deadline_at=opened_at + REPORT_LIMIT if incident_class == "accident" else None,
    )


def sla_status(incident: Incident, now: datetime) -> str:
    if incident.incident_class not in ARRIVAL_CLASSES:
        return "pending"
    if incident.arrived_at is not None:
        return "met" if incident.arrived_at < incident.deadline_at else "breached"
    if incident.is_open and now >= incident.deadline_at:
        return "breached"
    return incident.sla if incident.sla == "breached" else "pending"


def raised(severity: str, steps: int) -> str:
    """`severity` raised by `steps` on the ladder minor → major → critical."""
    return SEVERITIES[min(SEVERITIES.index(severity) + steps, len(SEVERITIES) - 1)]


def _next_ack_alert(incident: Incident, ack_s: int) -> datetime:
    return incident.ack_deadline_at + timedelta(seconds=ack_s * incident.ack_alerts)


def due(incident: Incident, now: datetime, ack_s: int) -> list[Due]:
    """What the ticker must do for this incident at `now` (nothing twice)."""
    i = incident
    if not i.is_open:
        return []
    out: list[Due] = []
    waiting_for_crew = i.arrived_at is None and i.incident_class in ARRIVAL_CLASSES
    if waiting_for_crew and i.warned_at is None and now >= i.warning_at and now < i.deadline_at:
        out.append(Due("warning", raised(i.severity, 0), 1))
    if waiting_for_crew and i.breach_alerted_at is None and now >= i.deadline_at:
        out.append(Due("breach", "critical", 2))
    if i.acknowledged_at is None and i.parent_id is None and now >= _next_ack_alert(i, ack_s):
        level = ack_alerts_due(i, now, ack_s)
        out.append(Due("ack_overdue", raised(i.severity, level), level))
    if (
        i.report_deadline_at is not None
        and i.regulator_reported_at is None
        and i.report_alerted_at is None
        and now >= i.report_deadline_at
    ):
        out.append(Due("report_overdue", "critical", 1))
    return out


def ack_alerts_due(incident: Incident, now: datetime, ack_s: int) -> int:
    """How many acknowledgement periods have passed by `now` (the re-alert's level)."""
    overdue = (now - incident.ack_deadline_at).total_seconds()
    return int(overdue // ack_s) + 1 if overdue >= 0 else 0


def next_due_at(incident: Incident, ack_s: int) -> datetime | None:
    """The earliest moment a clock of this incident will need the ticker, if any."""
    i = incident
    if not i.is_open:
        return None
    times: list[datetime] = []
    if i.arrived_at is None and i.incident_class in ARRIVAL_CLASSES:
        # A warning is only due before the deadline (once the breach has gone out, or the
        # incident opened late, there is none to give): otherwise it would stay due forever.
        if i.warned_at is None and i.breach_alerted_at is None and i.warning_at < i.deadline_at:
            times.append(i.warning_at)
        if i.breach_alerted_at is None:
            times.append(i.deadline_at)
    if i.acknowledged_at is None and i.parent_id is None:  # a companion's main one re-alerts
        times.append(_next_ack_alert(i, ack_s))
    if (
        i.report_deadline_at is not None
        and i.regulator_reported_at is None
        and (i.report_alerted_at is None)
    ):
        times.append(i.report_deadline_at)
    return min(times, default=None)

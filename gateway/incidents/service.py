"""Incidents: opened by rules or by people, moved along by people and telemetry, timed by one
ticker. Each change is stored with its timeline entries and the messages it must publish in
one transaction (see `gateway.notify`), so what dispatch sees always matches the store.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from gateway import metrics
from gateway.frames import EventBody, Frame, StatusBody, as_sent
from gateway.incidents import sla, state
from gateway.incidents.blackbox import BlackBox
from gateway.incidents.model import Incident, TimelineEntry
from gateway.notify import alert_messages, alert_payload, site_alert_payload, state_messages
from gateway.rules.engine import SITE_RULE
from gateway.store import NewIncident, OutboxMessage, Store

if TYPE_CHECKING:
    from gateway.rules import Alert

log = structlog.get_logger(__name__)

_SEVERITY_RANK = {s: n for n, s in enumerate(sla.SEVERITIES)}
_CREW_MODES = frozenset({"inspection", "maintenance"})
# One episode of one car, one card: a fault of a car whose entrapment is open, or opened this
# long before it (the controller's STOP_OUTSIDE_DOOR_ZONE may come first), is its companion.
# Accidents keep their own card: they carry the regulator's one-hour report clock.
_EPISODE = timedelta(minutes=10)


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class _Opening:
    """What opens an incident: a rule's alert or a person's report."""

    elevator_id: str
    kind: str
    severity: str
    incident_class: str
    rule: str | None
    source: str
    at: datetime
    by: str
    note: str | None
    group: str | None = None
    drill: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """The configurable side of the rules: limits per district, escalation targets."""

    limits: sla.Limits
    district_arrival_s: Mapping[str, int] = field(default_factory=dict)
    district_clock_start: Mapping[str, str] = field(default_factory=dict)
    alert_webhooks: tuple[str, ...] = ()  # every alert
    level2_webhooks: tuple[str, ...] = ()  # rescue station, on breach
    regulator_webhooks: tuple[str, ...] = ()  # on breach and overdue accident reports

    def limits_for(self, district: str | None) -> sla.Limits:
        arrival = self.district_arrival_s.get(district or "", self.limits.arrival_s)
        return replace(self.limits, arrival_s=arrival)

    def clock_start_for(self, district: str | None) -> str:
        return self.district_clock_start.get(district or "", "reported")


def _accounted_for(
    incident: Incident, at: datetime, *, by: str | None = None, what: str | None = None
) -> bool:
    """Whether the incident already holds this telemetry: its history reaches `at` and has an
    entry by the same rule (or saying the same). After a restart the journal replays the
    frames not yet acknowledged, and the rules, whose memory died with the process, detect
    again what the incident recorded: that must not add to its timeline or move its clocks
    (a replayed hold ends a few µs apart)."""
    return at <= max(e.at for e in incident.timeline) and any(
        e.by == by if by is not None else e.what == what for e in incident.timeline
    )


def _opened_by(alert: Alert) -> _Opening:
    return _Opening(
        alert.elevator_id, alert.kind, alert.severity, alert.incident_class, alert.rule,
        "telemetry", alert.at, f"rule {alert.rule}", alert.detail, alert.group,
    )  # fmt: skip


def new_incident_id(now: datetime) -> str:
    return f"INC-{now:%Y%m%d}-{secrets.token_hex(4)}"


def drill_record(
    *,
    company: str,
    at: datetime,
    elevator_id: str,
    by: str,
    note: str | None,
    limits: sla.Limits,
    now: datetime,
) -> Incident:
    """A drill held off-line, recorded afterwards (the CLI): a closed entrapment drill of
    `company` at `at`, which counts for the 6-month duty like one run on the board."""
    clocks = sla.clocks(at, limits, "entrapment")
    what = f"drill held off-line, recorded by {by}" + (f": {note}" if note else "")
    return Incident(
        id=new_incident_id(at), elevator_id=elevator_id, kind="entrapment", severity="critical",
        incident_class="entrapment", state="closed", rule=None, source="other", opened_at=at,
        deadline_at=clocks.deadline_at, warning_at=clocks.warning_at,
        ack_deadline_at=clocks.ack_deadline_at, updated_at=now, drill=True,
        maintenance_company=company, closed_at=at, resolution="other",
        timeline=(TimelineEntry(at, what, by),),
    )  # fmt: skip


class IncidentService:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        on_outbox: Callable[[], None] = lambda: None,
        on_change: Callable[[Incident], None] = lambda _i: None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._on_outbox = on_outbox
        self._on_change = on_change  # e.g. the `incident` time series
        self._lock = threading.RLock()
        self._blackbox = BlackBox()
        # Frames of elevators with an open incident, for its black box: written once per
        # batch (`flush_frames`), not one transaction per frame.
        self._frame_rows: list[dict[str, Any]] = []
        # Elevators with an open incident, so most frames cost no database query.
        self._open_elevators = {
            i.elevator_id for i in store.list_incidents(state="open", limit=100_000)
        }
        metrics.ELEVATORS_WITH_OPEN_INCIDENTS.set(len(self._open_elevators))

    # -- from telemetry (the pipeline's worker thread) ------------------------------------
    def on_frame(self, frame: Frame) -> None:
        self._blackbox.record(frame)
        if frame.elevator_id in self._open_elevators:
            with self._lock:
                self._telemetry_on_open(frame)

    def flush_frames(self) -> None:
        """Write the open incidents' frames gathered since the last call (the pipeline calls
        this before acknowledging the batch those frames came in)."""
        with self._lock:
            rows, self._frame_rows = self._frame_rows, []
            try:
                self._store.add_incident_frames(rows)
            except Exception:
                # One by one, so a row the store refuses costs only itself (logged), as it
                # did when each frame was written on its own.
                for row in rows:
                    try:
                        self._store.add_incident_frames([row])
                    except Exception:
                        log.exception("incident_frame_not_stored", incident_id=row["incident_id"])

    def last_frame(self, elevator_id: str) -> dict[str, Any] | None:
        return self._blackbox.last(elevator_id)

    def forget(self, elevator_ids: Sequence[str]) -> None:
        """Drop the black box of elevators long silent (see RuleEngine.evict)."""
        self._blackbox.forget(elevator_ids)

    def on_alerts(self, alerts: Sequence[Alert]) -> None:
        """Alerts that waited together (for the database, say), in order. The openings of
        cars with no incident known open here and no other alert among these are stored in
        one transaction: each transaction costs the alerts after it a commit and round trips
        (about 30 ms each on a loaded machine). If that fails on the open incidents' unique
        key (another process opened one meanwhile), and for every other alert, one by one."""
        with self._lock:
            per_car = Counter(a.elevator_id for a in alerts)
            fresh = [
                a for a in alerts
                if a.action == "fire" and a.rule != SITE_RULE and per_car[a.elevator_id] == 1
                and a.elevator_id not in self._open_elevators
            ]  # fmt: skip
            if len(fresh) > 1:
                registry = self._store.get_elevators([a.elevator_id for a in fresh])
                new = [
                    self._new(_opened_by(a), registry.get(a.elevator_id, {}), None, a.at)
                    for a in fresh
                ]
                if self._store.insert_incidents(new):
                    for n in new:
                        self._opened(n.incident, None, adopt=False)
                    alerts = [a for a in alerts if a not in fresh]
            for alert in alerts:
                self.on_alert(alert)

    def on_alert(self, alert: Alert) -> None:
        with self._lock:
            if alert.group is not None and alert.rule == SITE_RULE:
                self._site_alert(alert)
                return
            if alert.action == "fire":
                self._open_or_join(_opened_by(alert), alert.at)
                return
            incident = self._store.find_open_incident(alert.elevator_id, alert.kind)
            what = f"condition of rule {alert.rule} cleared"
            if incident is not None and not _accounted_for(incident, alert.at, what=what):
                self._save(incident, state.note(incident, what, "telemetry", alert.at), alert.at)

    # -- from people (the API) -------------------------------------------------------------
    def report(
        self,
        *,
        elevator_id: str,
        kind: str,
        source: str,
        reported_at: datetime,
        note: str | None,
        by: str,
        now: datetime,
        severity: str | None = None,
        drill: bool = False,
    ) -> tuple[Incident, bool]:
        """A report by a person; joins an open incident of that elevator and kind (a drill
        only an open drill). Returns the incident and whether it is new. `severity` defaults
        by kind."""
        incident_class = "entrapment" if kind == "entrapment" else "fault"
        severity = severity or ("critical" if incident_class == "entrapment" else "major")
        with self._lock:
            opening = _Opening(
                elevator_id, kind, severity, incident_class, None, source, reported_at, by, note,
                drill=drill,
            )  # fmt: skip
            return self._open_or_join(opening, now)

    def get(self, incident_id: str) -> Incident:
        incident = self._store.get_incident(incident_id)
        if incident is None:
            raise NotFound(incident_id)
        return incident

    def acknowledge(self, incident_id: str, by: str, now: datetime) -> Incident:
        return self._act(incident_id, now, lambda i: state.acknowledge(i, by, now))

    def dispatch(
        self, incident_id: str, crew_id: str, company: str | None, by: str, now: datetime
    ) -> Incident:
        def dispatch(i: Incident) -> Incident:
            dispatched = state.dispatch(i, crew_id, company, now, by)
            if i.dispatched_at is None and i.clock_start == "dispatched":
                limits = self._policy.limits_for(i.district)
                dispatched = state.restart_arrival_clock(dispatched, limits, now)
            return dispatched

        return self._act(incident_id, now, dispatch)

    def rescue_details(
        self,
        incident_id: str,
        people_trapped: int | None,
        rescue_level: int | None,
        by: str,
        now: datetime,
    ) -> Incident:
        """Record how many people were trapped and the rescue level reached (any time, also
        after the close: the facts often come in later)."""
        return self._act(
            incident_id,
            now,
            lambda i: state.rescue_details(i, people_trapped, rescue_level, now, by),
        )

    def arrival(
        self, incident_id: str, crew_id: str, at: datetime, by: str, now: datetime
    ) -> Incident:
        return self._act(
            incident_id,
            now,
            lambda i: state.arrival(i, at, "reported", now, f"{by} (crew {crew_id})"),
        )

    def release(self, incident_id: str, at: datetime, by: str, now: datetime) -> Incident:
        return self._act(incident_id, now, lambda i: state.release(i, at, now, by))

    def close(
        self, incident_id: str, resolution: str, note: str | None, by: str, now: datetime
    ) -> Incident:
        """Closes the incident and its open companions (which no list would show alone)."""
        with self._lock:
            closed = self._act(
                incident_id, now, lambda i: state.close(i, resolution, note, now, by)
            )
            for child in self._store.companions_of(closed.id):
                if child.is_open:
                    what = f"with {closed.id}"
                    self._save(child, state.close(child, resolution, what, now, by), now)
            return closed

    def regulator_report(self, incident_id: str, at: datetime, by: str, now: datetime) -> Incident:
        def record(i: Incident) -> Incident:
            return state.note(
                replace(i, regulator_reported_at=at), "reported to the regulator", by, now
            )

        return self._act(incident_id, now, record)

    # -- the ticker --------------------------------------------------------------------------
    def tick(self, now: datetime) -> int:
        """Fire every clock that is due; returns how many alerts went out. Safe on every
        gateway of a cluster: the store claims each due incident for one ticker."""
        alerts = 0

        def fire(incident: Incident) -> tuple[Incident, list[OutboxMessage]]:
            nonlocal alerts
            updated, messages = self._fire_due(incident, now)
            alerts += len(messages)
            return self._finish(updated, now, messages)

        with self._lock:
            fired = self._store.fire_due(now, fire)
            # Incidents other gateways or API instances opened, so their telemetry counts here.
            self._open_elevators = self._store.open_elevator_ids()
            metrics.ELEVATORS_WITH_OPEN_INCIDENTS.set(len(self._open_elevators))
        for _before, after in fired:
            self._on_change(after)
        if fired:
            self._on_outbox()
        return alerts

    # -- internals ---------------------------------------------------------------------------
    def _open_or_join(self, o: _Opening, now: datetime) -> tuple[Incident, bool]:
        # An elevator with no incident open here is looked up no further (an alert waits on
        # each query): one opened meanwhile by another process (its API, say) makes the
        # insert below fail on the open incidents' unique key, and this joins it then.
        known_open = o.elevator_id in self._open_elevators
        existing = (
            self._store.find_open_incident(o.elevator_id, o.kind, o.drill) if known_open else None
        )
        if existing is None:
            parent = (
                self._store.find_open_incident(o.elevator_id, "entrapment", o.drill)
                if o.incident_class == "fault" and known_open
                else None
            )
            new = self._new(o, self._store.get_elevator(o.elevator_id) or {}, parent, now)
            if self._store.insert_incidents([new]):
                adopt = o.incident_class == "entrapment" and known_open
                self._opened(new.incident, parent, adopt=adopt)
                return new.incident, True
            # Another process opened it first: join theirs.
            existing = self._store.find_open_incident(o.elevator_id, o.kind, o.drill)
            assert existing is not None
            self._open_elevators.add(o.elevator_id)
        return self._join(existing, o.severity, o.source, o.at, o.by, o.note, now), False

    def _new(
        self, o: _Opening, registry: Mapping[str, Any], parent: Incident | None, now: datetime
    ) -> NewIncident:
        """The incident `o` opens, with what its opening publishes and its black box."""
        limits = self._policy.limits_for(registry.get("district"))
        clocks = sla.clocks(o.at, limits, o.incident_class)
        opened_by = f"{'drill ' if o.drill else ''}opened by {o.by} ({o.source})" + (
            f": {o.note}" if o.note else ""
        )
        if o.group is not None:
            opened_by += f" (grouped under {o.group})"
        incident = Incident(
            id=new_incident_id(o.at), elevator_id=o.elevator_id, kind=o.kind,
            severity=o.severity, incident_class=o.incident_class, state="open", rule=o.rule,
            source=o.source, opened_at=o.at, deadline_at=clocks.deadline_at,
            warning_at=clocks.warning_at, ack_deadline_at=clocks.ack_deadline_at,
            report_deadline_at=clocks.report_deadline_at, updated_at=now,
            site=registry.get("site"), district=registry.get("district"),
            maintenance_company=registry.get("maintenance_company"), drill=o.drill,
            clock_start=self._policy.clock_start_for(registry.get("district")),
            parent_id=parent.id if parent is not None else None,
            timeline=(TimelineEntry(o.at, opened_by, o.by),),
        )  # fmt: skip
        incident = replace(
            incident,
            sla=sla.sla_status(incident, now),
            next_due_at=sla.next_due_at(incident, limits.ack_s),
        )
        # A car of a grouped alarm (a site-wide power cut) gets its incident and clocks, but
        # dispatch is alerted once, by the site's alert, not once per car; a companion is
        # alerted by its main incident.
        quiet = o.group is not None or parent is not None
        alert = [] if quiet else self._alert(incident, "opened", o.severity, o.at)
        frames = [
            self._frame_row(incident.id, f) for f in self._blackbox.recent(o.elevator_id, o.at)
        ]
        return NewIncident(incident, state_messages(incident) + alert, now, frames)

    def _opened(self, incident: Incident, parent: Incident | None, *, adopt: bool) -> None:
        """What follows a new incident's insert: it is known open, its companions, the log."""
        now = incident.updated_at
        self._open_elevators.add(incident.elevator_id)
        metrics.ELEVATORS_WITH_OPEN_INCIDENTS.set(len(self._open_elevators))
        self._on_change(incident)
        if parent is not None:
            self._attached(parent, incident, now)
        elif adopt:
            self._adopt_companions(incident, now)
        log.info(
            "incident_opened",
            incident_id=incident.id,
            elevator_id=incident.elevator_id,
            kind=incident.kind,
            severity=incident.severity,
            source=incident.source,
            deadline_at=incident.deadline_at.isoformat(),
        )
        self._on_outbox()

    def _join(
        self,
        incident: Incident,
        severity: str,
        source: str,
        at: datetime,
        by: str,
        note: str | None,
        now: datetime,
    ) -> Incident:
        """A second report of an open incident: the earlier time starts the clock (and its
        source becomes the incident's `source`, how it was first reported), the higher
        severity wins, and the timeline says who reported what; telemetry joining a person's
        report is recorded as confirming it. A detection the incident has already recorded
        (frames replayed after a restart) changes nothing."""
        if source == "telemetry" and _accounted_for(incident, at, by=by):
            return incident
        changes: dict[str, Any] = {}
        if _SEVERITY_RANK[severity] > _SEVERITY_RANK[incident.severity]:
            changes["severity"] = severity
        if at < incident.opened_at:
            registry = self._store.get_elevator(incident.elevator_id) or {}
            limits = self._policy.limits_for(registry.get("district"))
            clocks = sla.clocks(at, limits, incident.incident_class)
            changes.update(
                opened_at=at,
                source=source,
                deadline_at=clocks.deadline_at,
                warning_at=clocks.warning_at,
                ack_deadline_at=clocks.ack_deadline_at,
                report_deadline_at=clocks.report_deadline_at,
            )
        confirms = source == "telemetry" and incident.source != "telemetry"
        what = (
            (f"confirmed by telemetry ({by})" if confirms else f"also reported by {by} ({source})")
            + f" at {at.isoformat()}"
            + (f": {note}" if note else "")
        )
        updated = state.note(replace(incident, **changes), what, by, now)
        messages: list[OutboxMessage] = []
        if "severity" in changes and incident.parent_id is None:
            messages = self._alert(updated, "escalated", updated.severity, now)
        self._save(incident, updated, now, messages)
        return updated

    def _adopt_companions(self, main: Incident, now: datetime) -> None:
        """A new entrapment takes in the faults its car raised earlier in the episode."""
        for other in self._store.open_incidents_of(main.elevator_id):
            if (
                other.incident_class == "fault"
                and other.parent_id is None
                and other.opened_at >= main.opened_at - _EPISODE
            ):
                what = f"companion of {main.id} ({main.kind})"
                child = state.note(replace(other, parent_id=main.id), what, "gateway", now)
                self._save(other, child, now)
                main = self._attached(main, child, now)

    def _attached(self, main: Incident, child: Incident, now: datetime) -> Incident:
        what = f"companion {child.kind} ({child.id}) attached"
        updated = state.note(main, what, "gateway", now)
        self._save(main, updated, now)
        return updated

    def _act(
        self, incident_id: str, now: datetime, change: Callable[[Incident], Incident]
    ) -> Incident:
        with self._lock:
            incident = self.get(incident_id)
            updated = change(incident)
            self._save(incident, updated, now)
            return updated

    def _save(
        self,
        before: Incident,
        after: Incident,
        now: datetime,
        messages: Sequence[OutboxMessage] = (),
    ) -> None:
        """Store `after` as a change of `before`: only the fields this change set are applied,
        to the row as it is now and under its lock, so a concurrent change elsewhere in the
        cluster (a clock fired by another gateway, an action on another API instance) is
        kept rather than overwritten."""
        changed = {k: v for k, v in after.row().items() if v != getattr(before, k)}
        new_entries = after.timeline[len(before.timeline) :]

        def merge(current: Incident) -> tuple[Incident, list[OutboxMessage]]:
            merged = replace(current, **changed, timeline=current.timeline + new_entries)
            return self._finish(merged, now, messages)

        saved = self._store.update_incident(before.id, merge, now)
        if saved is None:
            return
        current, after = saved
        self._on_change(after)
        if current.is_open and not after.is_open:
            self._forget_if_none_open(after.elevator_id)
        self._on_outbox()

    def _finish(
        self, incident: Incident, now: datetime, messages: Sequence[OutboxMessage]
    ) -> tuple[Incident, list[OutboxMessage]]:
        """The incident with its SLA status and next clock, and all that its change publishes."""
        incident = replace(
            incident,
            sla=sla.sla_status(incident, now),
            next_due_at=sla.next_due_at(incident, self._policy.limits.ack_s),
        )
        return incident, [*messages, *state_messages(incident)]

    def _forget_if_none_open(self, elevator_id: str) -> None:
        if not self._store.open_incidents_of(elevator_id):
            self._open_elevators.discard(elevator_id)
            metrics.ELEVATORS_WITH_OPEN_INCIDENTS.set(len(self._open_elevators))

    def _telemetry_on_open(self, frame: Frame) -> None:
        incidents = self._store.open_incidents_of(frame.elevator_id)
        if not incidents:  # closed elsewhere (another gateway or API instance)
            self._forget_if_none_open(frame.elevator_id)
            return
        self._frame_rows += [
            self._frame_row(i.id, {"received_at": frame.received_at, "kind": frame.kind,
                                   "body": as_sent(frame)}) for i in incidents
        ]  # fmt: skip
        body, at = frame.body, frame.received_at
        crew_seen = (isinstance(body, StatusBody) and body.mode in _CREW_MODES) or (
            isinstance(body, EventBody) and body.code == "CREW_ON_SITE" and body.state == "raised"
        )
        for incident in incidents:
            updated = incident
            if crew_seen and incident.arrival_telemetry_at is None and at >= incident.opened_at:
                updated = state.arrival(updated, at, "telemetry", at, "telemetry")
            if (
                isinstance(body, StatusBody) and incident.kind == "entrapment"
                and incident.released_at is None and body.door_zone and body.door == "open"
                and not body.occupied and at >= incident.opened_at
            ):  # fmt: skip
                updated = state.release(updated, at, at, "telemetry")
            if updated is not incident:
                self._save(incident, updated, at)

    def _fire_due(self, incident: Incident, now: datetime) -> tuple[Incident, list[OutboxMessage]]:
        """The incident with its due clocks fired, and their alerts."""
        updated = incident
        messages: list[OutboxMessage] = []
        for due in sla.due(incident, now, self._policy.limits.ack_s):
            if due.kind == "warning":
                updated = replace(updated, warned_at=now)
                what = "warning: no arrival yet"
            elif due.kind == "breach":
                updated = replace(updated, breach_alerted_at=now, sla="breached")
                what = "breach: arrival limit passed; " + (
                    "a drill, not escalated"
                    if incident.drill
                    else "escalated to level 2 and the regulator"
                )
                if not incident.drill:
                    metrics.BREACHES.inc()
                log.warning(
                    "sla_breached",
                    incident_id=incident.id,
                    elevator_id=incident.elevator_id,
                    drill=incident.drill,
                )
            elif due.kind == "ack_overdue":
                updated = replace(updated, ack_alerts=due.level)
                what = f"not acknowledged: re-alert {due.level} ({due.severity})"
            else:
                updated = replace(updated, report_alerted_at=now)
                what = "accident report to the regulator overdue"
            updated = state.note(updated, what, "gateway", now)
            messages += self._alert(updated, due.kind, due.severity, now, due.level)
        return updated, messages

    def _site_alert(self, alert: Alert) -> None:
        """One alarm for a site whose elevators lost mains power together."""
        payload = site_alert_payload(
            alert.elevator_id, alert.action, alert.severity, alert.at, alert.detail, alert.group
        )
        self._store.enqueue(alert_messages(payload, self._policy.alert_webhooks), alert.at)
        log.warning(
            "site_power_cut", site=alert.elevator_id, action=alert.action, detail=alert.detail
        )
        self._on_outbox()

    def _alert(
        self, incident: Incident, alert_type: str, severity: str, at: datetime, level: int = 1
    ) -> list[OutboxMessage]:
        webhooks = list(self._policy.alert_webhooks)
        # A drill exercises dispatch: the rescue station and the regulator are not paged.
        if alert_type == "breach" and not incident.drill:
            webhooks += [*self._policy.level2_webhooks, *self._policy.regulator_webhooks]
        elif alert_type == "report_overdue" and not incident.drill:
            webhooks += self._policy.regulator_webhooks
        payload = alert_payload(incident, alert_type, severity, at, level)
        return alert_messages(payload, webhooks)

    @staticmethod
    def _frame_row(incident_id: str, frame: dict[str, Any]) -> dict[str, Any]:
        return {
            "incident_id": incident_id,
            "received_at": frame["received_at"],
            "kind": frame["kind"],
            "body": json.dumps(frame["body"]),
        }

"""One episode of one car, one card: a fault raised by a trapped car's episode is a companion
(`parent_id`) of its entrapment, alerted inside it, hidden from the top-level lists and closed
with it; on both store backends, and kept across a restart (a second store on the same URL)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from gateway.incidents import sla
from gateway.incidents.service import IncidentService, Policy
from gateway.rules import Alert
from gateway.store import Store, open_store

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
POLICY = Policy(limits=sla.Limits(arrival_s=1800, warning_s=1200, ack_s=180))


@pytest.fixture
def eid() -> str:
    return "C" + uuid.uuid4().hex[:10]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _alerts(store: Store, eid: str) -> list[tuple[str, str]]:
    """(type, kind) of the alerts published for `eid` since the last call."""
    out = []
    with store.claim_outbox(at(10**6), limit=100_000) as claim:
        for m in claim.messages:  # the store is shared: other tests' messages are there too
            if m.target != "dispatch/alerts":
                continue
            payload = json.loads(m.payload)
            if payload.get("elevator_id") == eid:
                out.append((payload["type"], payload["kind"]))
                assert m.id is not None
                claim.done(m.id)
    return out


def _report(service: IncidentService, eid: str, kind: str, t: float) -> str:
    incident, created = service.report(
        elevator_id=eid, kind=kind, source="phone", reported_at=at(t), note=None, by="ana",
        now=at(t),
    )  # fmt: skip
    assert created
    return incident.id


def test_a_fault_during_an_entrapment_is_its_companion(
    store: Store, store_url: str, eid: str
) -> None:
    service = IncidentService(store, POLICY)
    main = _report(service, eid, "entrapment", 0)
    child = _report(service, eid, "STOP_OUTSIDE_DOOR_ZONE", 50)
    assert service.get(child).parent_id == main
    assert service.get(main).parent_id is None
    assert any(child in e.what for e in service.get(main).timeline)
    # One alert for the episode: the companion neither opens nor re-alerts on its own.
    assert _alerts(store, eid) == [("opened", "entrapment")]
    service.tick(at(200))
    assert _alerts(store, eid) == [("ack_overdue", "entrapment")]
    assert service.get(child).next_due_at is None
    # The top-level lists leave the companion out; with children they show both.
    assert [i.id for i in store.list_incidents(elevator_id=eid, children=False)] == [main]
    assert {i.id for i in store.list_incidents(elevator_id=eid)} == {main, child}
    # Persisted: another store on the same URL (a restart) sees the same.
    again = open_store(store_url)
    try:
        assert again.get_incident(child).parent_id == main  # type: ignore[union-attr]
    finally:
        again.close()
    # Closing the episode closes its companion (no list would show it alone).
    service.close(main, "rescued", None, "ana", at(900))
    closed = service.get(child)
    assert (closed.state, closed.resolution) == ("closed", "rescued")


def test_an_entrapment_takes_in_the_faults_its_episode_raised_before_it(
    store: Store, eid: str
) -> None:
    service = IncidentService(store, POLICY)
    stale = _report(service, eid, "DOOR_FAIL_TO_CLOSE", 0)  # an hour before: another episode
    first = _report(service, eid, "STOP_OUTSIDE_DOOR_ZONE", 3600)
    main = _report(service, eid, "entrapment", 3620)
    assert service.get(first).parent_id == main
    assert service.get(stale).parent_id is None
    _alerts(store, eid)
    service.tick(at(3600 + 400))  # the adopted fault's own re-alerts have stopped
    assert ("ack_overdue", "STOP_OUTSIDE_DOOR_ZONE") not in _alerts(store, eid)


def test_an_alert_joins_what_another_process_opened_moments_ago(
    store: Store, store_url: str, eid: str
) -> None:
    """An alert for a car with no incident known open here is stored without looking first
    (the alarm path's fewest queries). Another process (its API) may have opened one
    moments ago, before this one's tick learned of it: the insert fails on the open
    incidents' unique key, and the alert joins that incident: one card, one opening alert,
    the detection on its timeline."""
    here = IncidentService(store, POLICY)
    other_store = open_store(store_url)
    try:
        reported = _report(IncidentService(other_store, POLICY), eid, "entrapment", 0)
    finally:
        other_store.close()
    _alerts(store, eid)  # the other's opening alert
    here.on_alert(
        Alert("fire", eid, "trapped_between_floors", "entrapment", "critical", "entrapment", at(5))
    )
    [incident] = store.list_incidents(elevator_id=eid)
    assert incident.id == reported
    assert any(e.what.startswith("confirmed by telemetry") for e in incident.timeline)
    assert _alerts(store, eid) == []  # no second opening
    # Known open here from now on: the next alert of that car looks it up first.
    here.on_alert(Alert("fire", eid, "alarm_held", "entrapment", "critical", "entrapment", at(6)))
    assert [i.id for i in store.list_incidents(elevator_id=eid)] == [reported]


def _fire(eid: str, t: float, rule: str = "trapped_between_floors") -> Alert:
    return Alert("fire", eid, rule, "entrapment", "critical", "entrapment", at(t))


def test_alerts_that_waited_together_open_their_incidents_in_one_commit(
    store: Store, eid: str
) -> None:
    """After a database pause the alerts raised meanwhile are stored together: one commit for
    the lot, each a commit and its round trips that the ones after it would wait on."""
    service = IncidentService(store, POLICY)
    cars = [f"{eid}-{n}" for n in range(5)]
    commits: list[object] = []

    def count(conn: object) -> None:
        commits.append(conn)

    event.listen(store.engine, "commit", count)
    try:
        service.on_alerts([_fire(car, n) for n, car in enumerate(cars)])
    finally:
        event.remove(store.engine, "commit", count)
    assert len(commits) == 1
    for n, car in enumerate(cars):
        [incident] = store.list_incidents(elevator_id=car)
        assert (incident.kind, incident.opened_at) == ("entrapment", at(n))
        assert _alerts(store, car) == [("opened", "entrapment")]


def test_alerts_stored_together_keep_each_cars_order_and_episode(store: Store, eid: str) -> None:
    """Among alerts stored together, a car with an incident open here (its fault becomes the
    new entrapment's companion) and a car whose condition fired and cleared go one by one, in
    order; the others together."""
    service = IncidentService(store, POLICY)
    fault = _report(service, f"{eid}-x", "STOP_OUTSIDE_DOOR_ZONE", 0)
    clear = Alert("clear", f"{eid}-d", "trapped_between_floors", "entrapment", "critical",
                  "entrapment", at(9))  # fmt: skip
    service.on_alerts(
        [_fire(f"{eid}-a", 5), _fire(f"{eid}-x", 6), _fire(f"{eid}-d", 7), clear,
         _fire(f"{eid}-b", 8)]
    )  # fmt: skip
    [main] = store.list_incidents(elevator_id=f"{eid}-x", children=False)
    assert main.kind == "entrapment" and service.get(fault).parent_id == main.id
    [cleared] = store.list_incidents(elevator_id=f"{eid}-d")
    assert cleared.timeline[-1].what == "condition of rule trapped_between_floors cleared"
    for car in ("a", "b", "d"):
        assert _alerts(store, f"{eid}-{car}") == [("opened", "entrapment")]

"""The incidents' thread lets alerts go ahead of the frames queued before them (issue 21): after
a database pause, the alerts raised meanwhile are stored first, not behind the seconds of
frames that piled up as well; and the frames of the trapped car they overtook still reach its
incident's black box.

Real PostgreSQL, paused by stopping its backends (SIGSTOP); no timing: the order is read at
the moment the incidents' thread reaches the end of the backlog."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from gateway.episodes import Recorder
from gateway.frames import Frame, decode
from gateway.incidents import sla
from gateway.incidents.runner import IncidentRunner, Tick, Work
from gateway.incidents.service import IncidentService, Policy
from gateway.rules import Alert
from gateway.store import Store, open_store
from tests.conftest import status_frame
from tests.services import make_pg_database, paused_backends

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
POLICY = Policy(limits=sla.Limits(arrival_s=1800, warning_s=1200, ack_s=180))
TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}


class _EndOfBacklog(threading.Event):
    """Set when the incidents' thread reaches it: notes then whether the trapped car's
    incident was already stored."""

    def __init__(self, store: Store, elevator_id: str) -> None:
        super().__init__()
        self._store, self._elevator_id = store, elevator_id
        self.incident_stored: bool | None = None

    def set(self) -> None:
        found = self._store.find_open_incident(self._elevator_id, "entrapment")
        self.incident_stored = found is not None
        super().set()


def _frame(elevator_id: str, seq: int, at: datetime, **fields: object) -> Frame:
    frame = decode(
        f"elevators/{elevator_id}/status",
        status_frame(elevator_id, seq, ts=at.isoformat(), **fields),
        at,
    )
    assert isinstance(frame, Frame)
    return frame


def test_after_a_database_pause_alerts_go_ahead_of_the_frames_queued_meanwhile() -> None:
    db = make_pg_database()
    store = open_store(db.url)
    stopping = threading.Event()
    runner = IncidentRunner(IncidentService(store, POLICY), Recorder(store), stopping)
    runner.start()
    try:
        # The backlog a pause leaves: a fleet's frames, among them the trapped car's, whose
        # hold completes at its last frame; then the next round, raising its alert.
        backlog: list[Work] = []
        for n in range(40):
            at = T0 + timedelta(seconds=n * 0.5)
            backlog += [_frame(f"F{k}", n, at) for k in range(50)]
            backlog.append(_frame("TRAPPED", n, at, **TRAPPED))
        end = _EndOfBacklog(store, "TRAPPED")
        backlog.append(end)
        due_at = T0 + timedelta(seconds=19.5)
        alert = Alert("fire", "TRAPPED", "trapped_between_floors", "entrapment", "critical",
                      "entrapment", due_at)  # fmt: skip
        with paused_backends(db.name):
            runner.tick(T0)  # the thread waits on the database with this
            runner.hand_over(backlog)
            runner.hand_over([alert])
        assert end.wait(30)
        assert end.incident_stored  # the alert went ahead of the backlog (it was queued last)
        [incident] = store.list_incidents(elevator_id="TRAPPED")
        assert incident.opened_at == due_at
        # The trapped car's 40 frames reached its black box all the same, though the alert
        # overtook them (its telemetry, read by time), and none twice.
        stored = store.incident_frames(incident.id)
        assert sorted(json.loads(f["body"])["seq"] for f in stored) == list(range(40))
        assert incident.released_at is None and incident.arrived_at is None
    finally:
        stopping.set()
        runner.stop()
        store.close()
        db.drop()


def test_every_alert_is_stored_once_and_in_order_with_the_ticks_between() -> None:
    """Alerts handed over in many rounds, ticks and batch ends between them: each stored once,
    in the order raised (a clear after its fire), each batch end after all before it."""
    db = make_pg_database()
    store = open_store(db.url)
    stopping = threading.Event()
    runner = IncidentRunner(IncidentService(store, POLICY), Recorder(store), stopping)
    runner.start()
    ends: list[threading.Event] = []
    try:
        for n in range(10):
            at = T0 + timedelta(minutes=n)
            eid = f"R{n}"
            fire = Alert("fire", eid, "trapped_between_floors", "entrapment", "critical",
                         "entrapment", at)  # fmt: skip
            clear = Alert("clear", eid, "trapped_between_floors", "entrapment", "critical",
                          "entrapment", at + timedelta(seconds=5))  # fmt: skip
            ends.append(threading.Event())
            runner.hand_over([_frame(eid, 0, at, **TRAPPED), fire, Tick(at), clear, ends[-1]])
        for end in ends:
            assert end.wait(30)
        incidents = [i for i in store.list_incidents(limit=100) if i.elevator_id.startswith("R")]
        assert sorted(i.elevator_id for i in incidents) == [f"R{n}" for n in range(10)]
        for incident in incidents:
            whats = [e.what for e in incident.timeline]
            assert [w.split()[0] for w in whats if w.startswith(("opened", "condition"))] == [
                "opened",
                "condition",
            ]
    finally:
        stopping.set()
        runner.stop()
        store.close()
        db.drop()

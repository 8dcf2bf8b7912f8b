"""The relational store on both backends: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway.incidents.model import Incident, TimelineEntry
from gateway.store import _MIGRATIONS, OutboxMessage, Store, open_store
from gateway.store.schema import metadata

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def eid() -> str:
    """An elevator id of this test's own: the PostgreSQL database is shared by the session."""
    return "S" + uuid.uuid4().hex[:10]


def incident(elevator_id: str, *, kind: str = "entrapment", due_in_s: float = 60) -> Incident:
    return Incident(
        id="INC-" + uuid.uuid4().hex[:12],
        elevator_id=elevator_id,
        kind=kind,
        severity="critical",
        incident_class="entrapment",
        state="open",
        rule="trapped_between_floors",
        source="telemetry",
        opened_at=NOW,
        deadline_at=NOW + timedelta(minutes=30),
        warning_at=NOW + timedelta(minutes=20),
        ack_deadline_at=NOW + timedelta(minutes=3),
        updated_at=NOW,
        next_due_at=NOW + timedelta(seconds=due_in_s),
        timeline=(TimelineEntry(NOW, "opened", "rule"),),
    )


def test_registry_put_and_get(store: Store, eid: str) -> None:
    record = {"district": "North", "site": "Tower 1", "inspection_due": date(2027, 3, 1)}
    assert store.put_elevator(eid, record, NOW) is True
    assert store.put_elevator(eid, record | {"district": "South"}, NOW) is False
    got = store.get_elevator(eid)
    assert got is not None
    assert (got["district"], got["site"], got["inspection_due"]) == (
        "South",
        "Tower 1",
        date(2027, 3, 1),
    )
    assert got["updated_at"] == NOW
    assert store.get_elevator(eid + "x") is None
    assert eid in {e["elevator_id"] for e in store.all_elevators()}


def test_incident_insert_save_find_list_and_due(store: Store, eid: str) -> None:
    first = incident(eid, due_in_s=-1)
    msg = OutboxMessage("mqtt", f"dispatch/incidents/{first.id}", b"{}", retain=True)
    assert store.insert_incident(first, [msg], NOW)
    found = store.find_open_incident(eid, "entrapment")
    assert found == first and found.timeline == first.timeline

    acked = replace(first, state="acknowledged", acknowledged_at=NOW, next_due_at=None)
    entry = TimelineEntry(NOW + timedelta(seconds=1), "acknowledged", "ana")
    store.save_incident(acked, [entry], [], NOW)
    got = store.get_incident(first.id)
    assert got == acked and got.timeline == (*first.timeline, entry)
    assert first.id not in {i.id for i in store.due_incidents(NOW)}

    other = incident(eid, kind="OVERSPEED", due_in_s=-1)
    assert store.insert_incident(other, [], NOW)
    assert other.id in {i.id for i in store.due_incidents(NOW)}
    assert {i.id for i in store.list_incidents(elevator_id=eid)} == {first.id, other.id}
    store.save_incident(replace(other, state="closed", closed_at=NOW), [], [], NOW)
    assert [i.id for i in store.list_incidents(state="closed", elevator_id=eid)] == [other.id]
    assert [i.id for i in store.open_incidents_of(eid)] == [first.id]
    # Once closed, a new incident of that kind may open.
    assert store.insert_incident(incident(eid, kind="OVERSPEED"), [], NOW)


def test_one_open_incident_per_kind_under_two_concurrent_inserters(store: Store, eid: str) -> None:
    start = threading.Barrier(2)
    results: list[bool] = []

    def insert() -> None:
        start.wait()
        results.append(store.insert_incident(incident(eid), [], NOW))

    threads = [threading.Thread(target=insert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert len(store.list_incidents(elevator_id=eid)) == 1


def test_outbox_in_order_done_and_retry(store: Store, eid: str) -> None:
    later = NOW + timedelta(hours=1)
    messages = [OutboxMessage("mqtt", f"t/{eid}/{n}", str(n).encode()) for n in range(3)]
    store.enqueue(messages, later)
    mine = [m for m in store.outbox_due(later, limit=10_000) if m.target.startswith(f"t/{eid}/")]
    assert [m.payload for m in mine] == [b"0", b"1", b"2"]
    assert mine[0].id is not None and mine[1].id is not None
    store.outbox_done(mine[0].id)
    store.outbox_retry(mine[1].id, 1, later + timedelta(seconds=2))
    due = {m.target for m in store.outbox_due(later, limit=10_000)}
    assert f"t/{eid}/0" not in due and f"t/{eid}/1" not in due and f"t/{eid}/2" in due


def test_dead_letter_keeps_the_newest(store: Store, eid: str) -> None:
    rows = [
        {
            "received_at": NOW,
            "topic": f"elevators/{eid}/status",
            "elevator_id": eid,
            "reason": "invalid",
            "detail": str(n),
            "payload": b"x",
            "payload_size": 1,
        }
        for n in range(5)
    ]
    store.add_dead_letters(rows, keep=3)
    assert store.dead_letter_count() == 3
    assert [r["detail"] for r in store.dead_letters(limit=3)] == ["4", "3", "2"]


def test_audit_log(store: Store, eid: str) -> None:
    store.add_audit(NOW, "admin", "0a1b2c3d", "PUT", f"/api/elevators/{eid}", "{}")
    [row] = [r for r in store.audit_log(limit=1000) if r["target"].endswith(eid)]
    assert (row["at"], row["role"], row["action"]) == (NOW, "admin", "PUT")


def test_migrations_at_head_and_match_the_schema(store: Store) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        context = MigrationContext.configure(conn)
        assert compare_metadata(context, metadata) == []

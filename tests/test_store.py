"""The relational store on both backends: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
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
    acked_msg = OutboxMessage("mqtt", f"dispatch/incidents/{first.id}", b"{1}", retain=True)
    changed = store.update_incident(
        first.id, lambda i: (replace(acked, timeline=(*i.timeline, entry)), [acked_msg]), NOW
    )
    assert changed is not None and changed[0] == first and changed[1] == acked
    got = store.get_incident(first.id)
    assert got == acked and got.timeline == (*first.timeline, entry)
    assert store.update_incident("INC-none", lambda i: (i, []), NOW) is None

    other = incident(eid, kind="OVERSPEED", due_in_s=-1)
    assert store.insert_incident(other, [], NOW)
    assert {i.id for i in store.list_incidents(elevator_id=eid)} == {first.id, other.id}
    assert eid in store.open_elevator_ids()
    # (Other tests' incidents share the PostgreSQL database: leave them as they are.)
    fired = store.fire_due(
        NOW,
        lambda i: (replace(i, next_due_at=None), []) if i.elevator_id == eid else None,
        limit=10_000,
    )
    assert [after.id for _before, after in fired] == [other.id]
    store.update_incident(other.id, lambda i: (replace(i, state="closed", closed_at=NOW), []), NOW)
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


def _mine(store: Store, at: datetime, eid: str) -> list[OutboxMessage]:
    with store.claim_outbox(at, limit=10_000) as claim:
        return [m for m in claim.messages if m.target.startswith(f"t/{eid}/")]


def test_outbox_in_order_done_and_retry(store: Store, eid: str) -> None:
    later = NOW + timedelta(hours=1)
    messages = [OutboxMessage("mqtt", f"t/{eid}/{n}", str(n).encode()) for n in range(3)]
    store.enqueue(messages, later)
    with store.claim_outbox(later, limit=10_000) as claim:
        mine = [m for m in claim.messages if m.target.startswith(f"t/{eid}/")]
        assert [m.payload for m in mine] == [b"0", b"1", b"2"]
        assert mine[0].id is not None and mine[1].id is not None
        claim.done(mine[0].id)
        claim.retry(mine[1].id, 1, later + timedelta(seconds=2))
    assert [m.target for m in _mine(store, later, eid)] == [f"t/{eid}/2"]
    [retried] = [m for m in _mine(store, later + timedelta(seconds=2), eid) if m.attempts]
    assert retried.target == f"t/{eid}/1"


def test_outbox_has_one_deliverer_at_a_time(pg_url: str, eid: str) -> None:
    """Gateways share the outbox: while one delivers, another's claim comes back empty."""
    first, second = open_store(pg_url), open_store(pg_url)
    first.enqueue([OutboxMessage("mqtt", f"t/{eid}/0", b"0")], NOW)
    with first.claim_outbox(NOW, limit=10_000) as held:
        assert held.messages
        assert _mine(second, NOW, eid) == []
    assert len(_mine(second, NOW, eid)) == 1
    first.close()
    second.close()


def test_a_due_clock_fires_once_with_two_tickers(pg_url: str, eid: str) -> None:
    """Two gateways' tickers on one PostgreSQL: the claim gives the firing to one of them."""
    stores = [open_store(pg_url), open_store(pg_url)]
    stores[0].insert_incident(incident(eid, due_in_s=-1), [], NOW)
    start = threading.Barrier(2)
    fired: list[str] = []

    def fire(i: Incident) -> tuple[Incident, list[OutboxMessage]]:
        time.sleep(0.3)  # hold the claim while the other ticker looks
        fired.append(i.id)
        alert = OutboxMessage("mqtt", f"t/{eid}/breach", b"{}")
        return replace(i, sla="breached", next_due_at=NOW + timedelta(hours=1)), [alert]

    def tick(store: Store) -> None:
        start.wait()
        store.fire_due(NOW, lambda i: fire(i) if i.elevator_id == eid else None, limit=10_000)

    threads = [threading.Thread(target=tick, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fired) == 1
    assert [m.target for m in _mine(stores[0], NOW, eid)] == [f"t/{eid}/breach"]
    for s in stores:
        s.close()


def test_membership_leases(store: Store, eid: str) -> None:
    group = "g" + eid
    assert store.renew_member(group, "a" + eid, NOW + timedelta(seconds=5), NOW) == ["a" + eid]
    live = store.renew_member(group, "b" + eid, NOW + timedelta(seconds=5), NOW)
    assert live == sorted(["a" + eid, "b" + eid])
    # a's lease runs out: only b is live; then b leaves cleanly.
    later = NOW + timedelta(seconds=6)
    assert store.renew_member(group, "b" + eid, later + timedelta(seconds=5), later) == ["b" + eid]
    store.leave("b" + eid)
    assert store.renew_member(group, "a" + eid, later + timedelta(seconds=5), later) == ["a" + eid]


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


def test_embedded_telemetry_stores_each_frame_once_and_prunes_by_age(
    store: Store, eid: str
) -> None:
    """A frame replayed after a crash (same elevator, boot, seq) adds no row; retention
    deletes old points in bounded chunks and never touches incidents."""
    day_ns = 86_400 * 10**9
    now_ns = int(NOW.timestamp() * 1e9)

    def point(seq: int, age_days: float, boot: int = 1) -> dict[str, object]:
        ts = now_ns - int(age_days * day_ns)
        return {"measurement": "elevator_status", "elevator_id": eid, "ts_ns": ts,
                "line": f"elevator_status,elevator_id={eid} seq={seq}i {ts}", "boot": boot,
                "seq": seq}  # fmt: skip

    store.add_telemetry([point(n, 40 - n) for n in range(40)])  # one a day, 40 days back
    store.add_telemetry([point(n, 40 - n) for n in range(35, 45)])  # a replay, and 5 new
    store.add_telemetry([point(0, 1, boot=2)])  # after a reboot seq 0 is a new frame
    online = {"measurement": "elevator_online", "elevator_id": eid, "ts_ns": now_ns,
              "line": f"elevator_online,elevator_id={eid} online=true {now_ns}"}  # fmt: skip
    store.add_telemetry([online, online])  # not frames: no identity, both kept
    store.insert_incident(incident(eid), [], NOW - timedelta(days=400))
    assert len(store.telemetry_lines(eid)) == 45 + 1 + 2
    before = now_ns - 30 * day_ns
    assert store.prune_telemetry(before, limit=4) == 4
    assert store.prune_telemetry(before, limit=100) == 6  # older than 30 days: 10 of them
    assert store.prune_telemetry(before, limit=100) == 0
    assert len(store.telemetry_lines(eid)) == 38
    assert store.list_incidents(elevator_id=eid)  # never pruned with telemetry


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


def test_store_depends_on_no_layer_above_it() -> None:
    """The store holds tables and queries; reports and incidents read it, never the reverse."""
    code = (
        "import sys, gateway.store; above = ('gateway.reports', 'gateway.incidents'); "
        "print(sorted(m for m in sys.modules if m.startswith(above)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

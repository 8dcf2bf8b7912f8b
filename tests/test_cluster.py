"""Two gateway processes on one Mosquitto and one PostgreSQL, sharing the elevators as a
cluster group; one is killed mid-run and the other takes over its elevators and clocks."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.clock import FixedClock
from gateway.cluster import Partition, owner
from gateway.ingest import AckToken, RawMessage
from gateway.store import open_store
from tests.conftest import Device, Subscriber, event_frame, free_port, status_frame, wait_for
from tests.gateways import api_url, healthy, start_gateway
from tests.ledger import Row, record
from tests.services import PgDatabase, make_pg_database

AUTH = {"Authorization": "Bearer tok-0123456789abcdefghijklmn"}
ELEVATORS = 12
_SEQ = re.compile(r"[ ,]seq=(\d+)i")


def test_a_departing_member_hands_over_only_its_own_elevators() -> None:
    ids = [f"E{n}" for n in range(3000)]
    before = {e: owner(("a", "b", "c"), e) for e in ids}
    after = {e: owner(("a", "c"), e) for e in ids}
    assert 800 < sum(o == "b" for o in before.values()) < 1200  # about a third each
    assert all(after[e] == o for e, o in before.items() if o != "b")


@pytest.fixture
def cluster_db() -> Iterator[PgDatabase]:
    """A database of this test's own: the test counts every incident and point in it."""
    db = make_pg_database()
    yield db
    db.drop()


class Fleet:
    """Elevators sending a status frame each every 0.1 s, one of them trapped on demand."""

    def __init__(self, device: Device, ids: list[str]) -> None:
        self.device = device
        self.seq = dict.fromkeys(ids, 0)
        self.trapped: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _send(self, eid: str, kind: str, frame: Callable[[int], bytes]) -> None:
        with self._lock:  # one seq counter per device, status and event alike
            seq = self.seq[eid]
            self.seq[eid] += 1
            self.device.publish(f"elevators/{eid}/{kind}", frame(seq))

    def _status(self, eid: str) -> None:
        trapped = eid in self.trapped
        self._send(
            eid,
            "status",
            lambda seq: status_frame(eid, seq, occupied=trapped, door_zone=not trapped),
        )

    def trap(self, eid: str) -> None:
        """A passenger stuck between floors, and the controller raises ENTRAPMENT."""
        self.trapped.add(eid)
        self._status(eid)
        self._send(eid, "event", lambda seq: event_frame(eid, seq, "ENTRAPMENT"))

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for eid in list(self.seq):
                self._status(eid)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return dict(self.seq)


def test_two_gateways_one_incident_and_outcome_per_entrapment_through_a_kill(
    broker, cluster_db: PgDatabase, tmp_path: Path, prefix: str
) -> None:
    base = {
        "GATEWAY_MQTT_URL": broker.url,
        "GATEWAY_STORE_URL": cluster_db.url,
        "GATEWAY_TSDB_URL": "",  # the embedded store: telemetry lands in PostgreSQL, countable
        "GATEWAY_CLUSTER_GROUP": "city",
        "GATEWAY_CLUSTER_LEASE_S": "1.5",
        "GATEWAY_ARRIVAL_LIMIT_S": "4",
        "GATEWAY_ARRIVAL_WARNING_S": "3",
        "GATEWAY_TOKENS": "dispatcher:tok-0123456789abcdefghijklmn",
        "GATEWAY_FLUSH_INTERVAL_S": "0.05",
        "GATEWAY_LOG_LEVEL": "warning",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    envs = []
    for name in ("a", "b", "api"):
        (tmp_path / name).mkdir()
        envs.append(
            dict(os.environ)
            | base
            | {
                "GATEWAY_MQTT_CLIENT_ID": f"gw-{name}-{uuid.uuid4().hex[:6]}",
                "GATEWAY_HTTP_PORT": str(free_port()),
                "GATEWAY_SPOOL_DIR": str(tmp_path / name / "spool"),
            }
        )
    doomed, survivor, api_only = envs
    members = tuple(sorted(e["GATEWAY_MQTT_CLIENT_ID"] for e in (doomed, survivor)))
    candidates = [f"{prefix}-{n:02d}" for n in range(64)]
    of_doomed = [e for e in candidates if owner(members, e) == doomed["GATEWAY_MQTT_CLIENT_ID"]]
    of_doomed = of_doomed[: ELEVATORS // 2]
    of_survivor = [e for e in candidates if e not in of_doomed][: ELEVATORS // 2]
    ids = of_doomed + of_survivor

    alerts = Subscriber(broker.url, "dispatch/alerts")
    procs = [
        start_gateway(env, tmp_path / name / "gw.log", command)
        for env, name, command in zip(envs, ("a", "b", "api"), ("run", "run", "api"), strict=True)
    ]
    device = Device(broker.url)
    try:
        for env in (doomed, survivor):
            wait_for(lambda env=env: healthy(env), timeout=30)
        wait_for(lambda: healthy(api_only, key="store"), timeout=30)
        fleet = Fleet(device, ids)
        # Everyone reads and acts through the stateless API instance, which has no MQTT
        # session: its writes reach dispatch through the gateways' delivery of the outbox.
        api = api_url(api_only)

        def entrapments() -> dict[str, dict[str, object]]:
            found = httpx.get(f"{api}/incidents?state=all", headers=AUTH, timeout=5).json()
            mine = [i for i in found if i["kind"] == "entrapment" and i["elevator_id"] in ids]
            assert len({i["elevator_id"] for i in mine}) == len(mine), "two incidents, one car"
            return {str(i["elevator_id"]): i for i in mine}

        # Before the kill: entrapments on both gateways' elevators; one crew arrives in time.
        first = [of_doomed[0], of_doomed[1], of_survivor[0], of_survivor[1]]
        for eid in first:
            fleet.trap(eid)
        wait_for(lambda: set(entrapments()) == set(first), timeout=15)
        in_time = entrapments()[of_doomed[0]]["id"]
        r = httpx.post(f"{api}/incidents/{in_time}/arrival", headers=AUTH, json={"crew_id": "c"})
        assert r.status_code == 200, r.text

        # kill -9 the gateway owning half the fleet; entrapments go on on its elevators too.
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        second = [of_doomed[2], of_survivor[2]]
        for eid in second:
            fleet.trap(eid)

        def settled() -> bool:
            found = entrapments()
            return set(found) == set(first + second) and all(
                i["sla"] in ("met", "breached") for i in found.values()
            )

        wait_for(settled, timeout=30)
        sent = fleet.stop()
        found = entrapments()
        assert found[of_doomed[0]]["sla"] == "met"
        assert {e for e, i in found.items() if i["sla"] == "breached"} == set(first + second) - {
            of_doomed[0]
        }

        def breach_alerts() -> dict[str, int]:
            counts: dict[str, int] = {}
            for _t, payload in alerts.messages:
                alert = json.loads(payload)
                if alert.get("type") == "breach" and alert["elevator_id"] in ids:
                    counts[alert["elevator_id"]] = counts.get(alert["elevator_id"], 0) + 1
            return counts

        expected = dict.fromkeys(set(first + second) - {of_doomed[0]}, 1)
        wait_for(lambda: breach_alerts() == expected, timeout=15)

        # A phone report taken by the API instance is alerted by the surviving gateway.
        body = {"elevator_id": f"{prefix}-phone", "kind": "entrapment", "source": "phone"}
        phoned = httpx.post(f"{api}/incidents", headers=AUTH, json=body).json()["id"]
        wait_for(lambda: any(json.loads(p)["incident_id"] == phoned for _t, p in alerts.messages))

        # Nothing lost: every frame every elevator sent is stored, the dead gateway's
        # elevators' too (frames it never processed were replayed by the survivor).
        store = open_store(cluster_db.url)

        def missing() -> dict[str, int]:
            gaps = {}
            for eid, count in sent.items():
                seqs = {
                    int(m.group(1))
                    for line in store.telemetry_lines(eid)
                    if (m := _SEQ.search(line))
                }
                if len(set(range(count)) - seqs):
                    gaps[eid] = len(set(range(count)) - seqs)
            return gaps

        try:
            wait_for(lambda: not missing(), timeout=15)
        finally:
            store.close()
        assert breach_alerts() == expected  # and no breach fired twice meanwhile
        frames = sum(sent.values())  # each acknowledged before the next (Device.publish)
        note = "embedded store on PostgreSQL; one incident and breach per entrapment"
        record(Row("a cluster member killed -9", frames, frames, frames, 0, {}, 0, note))
    finally:
        device.close()
        alerts.close()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)


def test_the_takeover_hold_counts_what_it_pushes_out_and_renews_on_the_gateway_clock(
    tmp_path: Path,
) -> None:
    """Frames held for a takeover are bounded; one pushed out is counted, never silent. The
    lease and its renewal run on the one clock the gateway is given."""
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
    mine = Partition(store, "g", "a", clock, lease_s=10, max_held=3)
    Partition(store, "g", "b", clock, lease_s=10).renew()
    mine.renew()
    theirs = [e for e in (f"E{n}" for n in range(100)) if not mine.owns(e)][:5]
    before = REGISTRY.get_sample_value("gateway_cluster_held_dropped_total") or 0
    for n, eid in enumerate(theirs):
        raw = RawMessage(f"elevators/{eid}/status", b"{}", clock.now(), AckToken(n + 1, 1))
        assert not mine.take_or_hold(eid, raw)
    assert REGISTRY.get_sample_value("gateway_cluster_held_dropped_total") == before + 2
    assert mine.renew_if_due() == []  # not due: no time has passed on its clock
    clock.advance(3.4)
    store.leave("b")  # b departs: its elevators and their held frames are a's now
    taken = mine.renew_if_due()
    assert [r.topic for r in taken] == [f"elevators/{e}/status" for e in theirs[2:]]
    store.close()

"""The relational store: one SQLAlchemy Core layer for SQLite (embedded default) and PostgreSQL.

`open_store(url)` connects, brings the schema to the newest migration and returns a `Store`.
All SQL goes through SQLAlchemy expressions, so every value is a bound parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.inspection import inspect

from gateway.store.records import Episode, Incident, MaintenanceRecord, Notice, TimelineEntry
from gateway.store.schema import (
    audit,
    dead_letter,
    elevators,
    episodes,
    gateway_members,
    incident_frames,
    incidents,
    maintenance_records,
    outage_notices,
    outbox,
    telemetry,
    telemetry_heard,
    timeline,
)

REGISTRY_FIELDS = (
    "site",
    "district",
    "address",
    "maintenance_company",
    "maintenance_phone",
    "use_unit",
    "inspection_due",
    "last_maintenance",
)
_INCIDENT_FIELDS = tuple(f.name for f in fields(Incident) if f.name != "timeline")


# What a store that is away for a while raises (SQLite busy, a PostgreSQL restart or failover,
# a dropped connection): worth trying again, unlike a refused statement.
STORE_UNAVAILABLE = (OperationalError, InterfaceError)

# The outbox channel of webhook notifications that gave up (see `OutboxClaim.give_up`).
DEAD_WEBHOOK = "webhook_dead"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    channel: str  # "mqtt" or "webhook"
    target: str  # topic or URL
    payload: bytes
    retain: bool = False
    id: int | None = None
    attempts: int = 0
    created_at: datetime | None = None  # set once stored: when the change it reports happened
    next_attempt_at: datetime | None = None  # set once stored


@dataclass(frozen=True)
class NewIncident:
    """An incident to store, what its opening publishes (as of `now`), and its black box's
    frames (rows as for `Store.add_incident_frames`)."""

    incident: Incident
    messages: Sequence[OutboxMessage]
    now: datetime
    frames: Sequence[dict[str, Any]] = ()


# A change of one stored incident, applied under its row lock: the incident after the change
# and what that change publishes, or None to leave it as it is.
IncidentChange = Callable[[Incident], tuple[Incident, Sequence[OutboxMessage]] | None]


class OutboxClaim:
    """Due outbox messages held by one deliverer; each mark commits at once."""

    def __init__(self, engine: Engine, messages: list[OutboxMessage]) -> None:
        self.messages = messages
        self._engine = engine

    def done(self, *message_ids: int) -> None:
        """Delivered: gone from the outbox, in one commit (the MQTT channel marks all it
        published at once; one commit each made the next alert wait behind them)."""
        with self._engine.begin() as conn:
            conn.execute(delete(outbox).where(outbox.c.id.in_(message_ids)))

    def retry(self, message_id: int, attempts: int, next_attempt_at: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .values(attempts=attempts, next_attempt_at=next_attempt_at)
            )

    def give_up(self, message_id: int) -> None:
        """Kept as a dead letter: out of the channel's queue, still in the table to read."""
        with self._engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.id == message_id).values(channel=DEAD_WEBHOOK)
            )


_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the API read while the pipeline writes; NORMAL is durable in WAL mode
        # against process crashes (only an OS crash can lose the last transactions).
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        # Gateways of a cluster start together: one migrates, the others wait and find it done.
        _lock(conn, _MIGRATION_LOCK, wait=True)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


# PostgreSQL advisory lock keys (arbitrary, fixed): schema migration, outbox delivery.
_MIGRATION_LOCK = 0x6761_7465_0001
_OUTBOX_LOCK = 0x6761_7465_0002
_WEBHOOK_LOCK = 0x6777_0001  # with hashtext(url): one webhook deliverer per endpoint


def _outbox_messages(conn: Connection, query: Any) -> list[OutboxMessage]:
    columns = (
        "channel", "target", "payload", "retain", "id", "attempts", "created_at", "next_attempt_at"
    )  # fmt: skip
    return [OutboxMessage(*(r[c] for c in columns)) for r in conn.execute(query).mappings()]


def _open_key(elevator_id: str, kind: str, drill: bool) -> str:
    """One open incident per elevator and kind, and apart from it one drill: a drill never
    joins a real alarm, nor a real alarm a drill."""
    return f"{elevator_id}|{kind}" + ("|drill" if drill else "")


def _lock(conn: Connection, key: int, *, wait: bool) -> bool:
    """Take a transaction-scoped lock across processes; SQLite has a single writer anyway."""
    if conn.dialect.name != "postgresql":
        return True
    if wait:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        return True
    return conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar_one()


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.engine.dispose()

    # -- dead letter ---------------------------------------------------------------------
    def add_dead_letters(self, rows: Sequence[dict[str, Any]], keep: int) -> None:
        """Insert rejected messages and trim the table to the newest `keep` rows."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(dead_letter), list(rows))
            newest_dropped = (
                select(dead_letter.c.id).order_by(dead_letter.c.id.desc()).offset(keep).limit(1)
            ).scalar_subquery()
            conn.execute(delete(dead_letter).where(dead_letter.c.id <= newest_dropped))

    def dead_letters(
        self, limit: int = 100, reason: str | None = None, elevator_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest rejections first, of one reason and elevator if given."""
        query = select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit)
        if reason is not None:
            query = query.where(dead_letter.c.reason == reason)
        if elevator_id is not None:
            query = query.where(dead_letter.c.elevator_id == elevator_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delete_dead_letters(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(dead_letter).where(dead_letter.c.id.in_(list(ids))))

    def dead_letter_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(dead_letter)).scalar_one()

    # -- embedded telemetry --------------------------------------------------------------
    def add_telemetry(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert points; a frame already stored (same elevator, boot and seq: replayed after
        a crash) is skipped."""
        rows = list(rows)
        if rows:
            with self.engine.begin() as conn:
                dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                conn.execute(dialect_insert(telemetry).on_conflict_do_nothing(), rows)

    def prune_telemetry(self, before_ns: int, limit: int) -> int:
        """Delete up to `limit` of the oldest points older than `before_ns` (the embedded
        store's retention; incidents and records live in other tables and are never pruned
        here). Returns how many went."""
        oldest = (
            select(telemetry.c.id)
            .where(telemetry.c.ts_ns < before_ns)
            .order_by(telemetry.c.ts_ns)
            .limit(limit)
        )
        with self.engine.begin() as conn:
            return conn.execute(delete(telemetry).where(telemetry.c.id.in_(oldest))).rowcount

    def telemetry_lines(self, elevator_id: str | None = None) -> list[str]:
        query = select(telemetry.c.line).order_by(telemetry.c.ts_ns, telemetry.c.id)
        if elevator_id is not None:
            query = query.where(telemetry.c.elevator_id == elevator_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- episodes ------------------------------------------------------------------------
    def save_episodes(self, changed: Sequence[Episode]) -> None:
        """Insert new episodes and update the others (the same elevator, kind and start): a
        batch replayed after a crash writes the same rows again, harmlessly."""
        if not changed:
            return
        with self.engine.begin() as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = dialect_insert(episodes)
            stmt = stmt.on_conflict_do_update(
                index_elements=["elevator_id", "kind", "started_at"],
                set_={
                    "ended_at": stmt.excluded.ended_at,
                    "last_seen_at": stmt.excluded.last_seen_at,
                },
            )
            conn.execute(stmt, [asdict(e) for e in changed])

    def open_episodes(self) -> list[Episode]:
        return self._episodes(select(episodes).where(episodes.c.ended_at.is_(None)))

    def episodes(
        self, since: datetime, until: datetime, elevator_id: str | None = None
    ) -> list[Episode]:
        """Episodes that overlap [since, until] (open ones included), by elevator and start."""
        query = select(episodes).where(
            episodes.c.started_at <= until,
            or_(episodes.c.ended_at.is_(None), episodes.c.ended_at >= since),
        )
        if elevator_id is not None:
            query = query.where(episodes.c.elevator_id == elevator_id)
        return self._episodes(query)

    def _episodes(self, query: Any) -> list[Episode]:
        query = query.order_by(episodes.c.elevator_id, episodes.c.started_at, episodes.c.kind)
        with self.engine.connect() as conn:
            return [
                Episode(r.elevator_id, r.kind, r.started_at, r.ended_at, r.last_seen_at)
                for r in conn.execute(query)
            ]

    def mark_heard(self, heard: Mapping[str, datetime]) -> None:
        """Record when these elevators were heard from (any frame)."""
        if not heard:
            return
        with self.engine.begin() as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = dialect_insert(telemetry_heard)
            stmt = stmt.on_conflict_do_update(
                index_elements=["elevator_id"], set_={"heard_at": stmt.excluded.heard_at}
            )
            conn.execute(stmt, [{"elevator_id": e, "heard_at": at} for e, at in heard.items()])

    def heard_since(self, since: datetime) -> set[str]:
        query = select(telemetry_heard.c.elevator_id).where(telemetry_heard.c.heard_at >= since)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    # -- outage notices ------------------------------------------------------------------
    def add_outage_notice(self, notice: Notice, recorded_at: datetime, recorded_by: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                insert(outage_notices).values(
                    elevator_id=notice.elevator_id,
                    posted_at=notice.posted_at,
                    reason=notice.reason,
                    expected_return_at=notice.expected_return_at,
                    recorded_at=recorded_at,
                    recorded_by=recorded_by,
                )
            ).inserted_primary_key[0]

    def outage_notices(self, elevator_id: str | None = None) -> list[Notice]:
        """Every notice, or one elevator's (an index lookup), oldest first."""
        query = select(outage_notices).order_by(outage_notices.c.posted_at)
        if elevator_id is not None:
            query = query.where(outage_notices.c.elevator_id == elevator_id)
        with self.engine.connect() as conn:
            return [
                Notice(r.elevator_id, r.posted_at, r.reason, r.expected_return_at)
                for r in conn.execute(query)
            ]

    # -- maintenance records -------------------------------------------------------------
    def add_maintenance_record(
        self, record: MaintenanceRecord, recorded_at: datetime, recorded_by: str
    ) -> int:
        values = asdict(record) | {"items": json.dumps(list(record.items), ensure_ascii=False)}
        with self.engine.begin() as conn:
            return conn.execute(
                insert(maintenance_records).values(
                    values | {"recorded_at": recorded_at, "recorded_by": recorded_by}
                )
            ).inserted_primary_key[0]

    def maintenance_records(
        self, since: datetime | None = None, elevator_id: str | None = None
    ) -> list[MaintenanceRecord]:
        """Records of visits from `since` on (every one if None), oldest first."""
        record_columns = [maintenance_records.c[f.name] for f in fields(MaintenanceRecord)]
        query = select(*record_columns).order_by(maintenance_records.c.at, maintenance_records.c.id)
        if since is not None:
            query = query.where(maintenance_records.c.at >= since)
        if elevator_id is not None:
            query = query.where(maintenance_records.c.elevator_id == elevator_id)
        with self.engine.connect() as conn:
            return [
                MaintenanceRecord(**{**r._asdict(), "items": tuple(json.loads(r.items))})
                for r in conn.execute(query)
            ]

    # -- registry ------------------------------------------------------------------------
    def get_elevator(self, elevator_id: str) -> dict[str, Any] | None:
        return self.get_elevators([elevator_id]).get(elevator_id)

    def get_elevators(self, elevator_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The registry records of these elevators, by id (those registered)."""
        query = select(elevators).where(elevators.c.elevator_id.in_(elevator_ids))
        with self.engine.connect() as conn:
            return {r["elevator_id"]: dict(r) for r in conn.execute(query).mappings()}

    def newest_incident_at(self) -> datetime | None:
        """The latest change to any incident (None: no incident yet)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(incidents.c.updated_at))).scalar_one()

    def all_elevators(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(elevators)).mappings()]

    def put_elevator(
        self, elevator_id: str, record: dict[str, str | date | None], now: datetime
    ) -> bool:
        """Create or replace a registry record; True if it was created."""
        values = {k: record.get(k) for k in REGISTRY_FIELDS} | {"updated_at": now}
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(elevators).where(elevators.c.elevator_id == elevator_id).values(values)
            ).rowcount
            if not changed:
                conn.execute(insert(elevators).values(values | {"elevator_id": elevator_id}))
            return not changed

    # -- incidents -----------------------------------------------------------------------
    def insert_incident(
        self,
        incident: Incident,
        messages: Sequence[OutboxMessage],
        now: datetime,
        frames: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Store a new incident, what it must publish and its black box's `frames`, in one
        transaction (one commit: an alert waits on it); False if one of its elevator and
        kind is already open (the unique `open_key` decides, whichever process came first)."""
        return self.insert_incidents([NewIncident(incident, messages, now, frames)])

    def insert_incidents(self, new: Sequence[NewIncident]) -> bool:
        """`insert_incident` for several, all in one transaction, or none of them (False)."""
        try:
            with self.engine.begin() as conn:
                for n in new:
                    conn.execute(insert(incidents).values(self._incident_row(n.incident)))
                    self._add_timeline(conn, n.incident.id, n.incident.timeline)
                    self._add_outbox(conn, n.messages, n.now)
                    if n.frames:
                        conn.execute(insert(incident_frames), list(n.frames))
        except IntegrityError:
            return False
        return True

    def update_incident(
        self, incident_id: str, change: IncidentChange, now: datetime
    ) -> tuple[Incident, Incident] | None:
        """Apply `change` to the stored incident under a row lock (PostgreSQL), so writers in
        other gateways or API instances are serialised instead of overwriting each other.
        Returns (before, after); None if there is no such incident or nothing changed."""
        query = select(incidents).where(incidents.c.id == incident_id).with_for_update()
        with self.engine.begin() as conn:
            changed = self._change_locked(conn, query, change, now)
        return changed[0] if changed else None

    def fire_due(
        self, now: datetime, fire: IncidentChange, limit: int = 100
    ) -> list[tuple[Incident, Incident]]:
        """Claim incidents whose clocks are due and record what `fire` makes of each, claim
        and firing and its outbox messages in one transaction. Claimed rows are locked and
        other tickers skip them (FOR UPDATE SKIP LOCKED), then find them no longer due: a
        clock fires once however many gateways tick. Returns (before, after) pairs."""
        query = (
            select(incidents)
            .where(incidents.c.next_due_at <= now)
            .order_by(incidents.c.next_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as conn:
            return self._change_locked(conn, query, fire, now)

    def _change_locked(
        self, conn: Connection, query: Any, change: IncidentChange, now: datetime
    ) -> list[tuple[Incident, Incident]]:
        changed = []
        for before in self._with_timeline(conn, list(conn.execute(query).mappings())):
            result = change(before)
            if result is None:
                continue
            after, messages = result
            conn.execute(
                update(incidents)
                .where(incidents.c.id == after.id)
                .values(self._incident_row(after))
            )
            self._add_timeline(conn, after.id, after.timeline[len(before.timeline) :])
            self._add_outbox(conn, messages, now)
            changed.append((before, after))
        return changed

    # -- outbox --------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[OutboxMessage], now: datetime) -> None:
        """Messages that belong to no incident change (e.g. a site-level alarm)."""
        with self.engine.begin() as conn:
            self._add_outbox(conn, messages, now)

    @contextmanager
    def claim_outbox(self, now: datetime, limit: int = 100) -> Iterator[OutboxClaim]:
        """The due MQTT messages, oldest first, for one deliverer at a time across all gateways
        (an advisory lock held to the end of the block; others get none this round), so the
        shared outbox is published once and in order. Each mark commits at once."""
        query = (
            select(outbox)
            .where(outbox.c.channel == "mqtt", outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as held:
            locked = _lock(held, _OUTBOX_LOCK, wait=False)
            yield OutboxClaim(self.engine, _outbox_messages(held, query) if locked else [])

    @contextmanager
    def claim_webhook(self, url: str) -> Iterator[OutboxClaim]:
        """The oldest webhook notification for `url`, due or not (its endpoint's queue is
        delivered in order), for one deliverer at a time per endpoint across all gateways.
        The claim is held while it is posted, on a connection that writes nothing, so a
        slow endpoint holds no lock the others need."""
        query = (
            select(outbox)
            .where(outbox.c.channel == "webhook", outbox.c.target == url)
            .order_by(outbox.c.id)
            .limit(1)
        )
        with self.engine.connect() as held:
            locked = (
                held.dialect.name != "postgresql"
                or held.execute(
                    # Two int4 keys: a key space apart from the one-key locks above.
                    text("SELECT pg_try_advisory_xact_lock(:k, hashtext(:url))"),
                    {"k": _WEBHOOK_LOCK, "url": url},
                ).scalar_one()
            )
            yield OutboxClaim(self.engine, _outbox_messages(held, query) if locked else [])

    def webhook_targets(self) -> set[str]:
        """Endpoints with notifications waiting (some may no longer be configured)."""
        query = select(outbox.c.target).where(outbox.c.channel == "webhook").distinct()
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def dead_webhooks(self) -> dict[str, int]:
        """Webhook notifications that gave up, per endpoint."""
        query = (
            select(outbox.c.target, func.count())
            .where(outbox.c.channel == DEAD_WEBHOOK)
            .group_by(outbox.c.target)
        )
        with self.engine.connect() as conn:
            return {target: n for target, n in conn.execute(query)}

    # -- cluster membership --------------------------------------------------------------
    def renew_member(
        self, group: str, member_id: str, expires_at: datetime, now: datetime
    ) -> list[str]:
        """Extend `member_id`'s lease in `group`; returns the group's live members, sorted."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(gateway_members)
                .where(gateway_members.c.member_id == member_id)
                .values(group_name=group, expires_at=expires_at)
            ).rowcount
            if not renewed:
                conn.execute(
                    insert(gateway_members).values(
                        member_id=member_id, group_name=group, expires_at=expires_at
                    )
                )
            live = select(gateway_members.c.member_id).where(
                gateway_members.c.group_name == group, gateway_members.c.expires_at > now
            )
            return sorted(conn.execute(live).scalars())

    def leave(self, member_id: str) -> None:
        """A member that stops cleanly hands its elevators over at once, not at expiry."""
        with self.engine.begin() as conn:
            conn.execute(delete(gateway_members).where(gateway_members.c.member_id == member_id))

    def outbox_size(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox)).scalar_one()

    @staticmethod
    def _add_outbox(conn: Connection, messages: Sequence[OutboxMessage], now: datetime) -> None:
        if messages:
            conn.execute(
                insert(outbox),
                [
                    {
                        "created_at": now,
                        "channel": m.channel,
                        "target": m.target,
                        "payload": m.payload,
                        "retain": m.retain,
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for m in messages
                ],
            )

    def get_incident(self, incident_id: str) -> Incident | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(incidents).where(incidents.c.id == incident_id))
                .mappings()
                .first()
            )
            return self._with_timeline(conn, [row])[0] if row else None

    def find_open_incident(
        self, elevator_id: str, kind: str, drill: bool = False
    ) -> Incident | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(incidents).where(
                        incidents.c.open_key == _open_key(elevator_id, kind, drill)
                    )
                )
                .mappings()
                .first()
            )
            return self._with_timeline(conn, [row])[0] if row else None

    def list_incidents(
        self,
        *,
        state: str = "all",
        elevator_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        children: bool = True,
    ) -> list[Incident]:
        """Newest first; `children=False` leaves out companions (incidents with a parent)."""
        query = select(incidents).order_by(incidents.c.opened_at.desc()).limit(limit)
        if not children:
            query = query.where(incidents.c.parent_id.is_(None))
        if state == "open":
            query = query.where(incidents.c.state != "closed")
        elif state == "closed":
            query = query.where(incidents.c.state == "closed")
        if elevator_id is not None:
            query = query.where(incidents.c.elevator_id == elevator_id)
        if since is not None:
            query = query.where(incidents.c.opened_at >= since)
        if until is not None:
            query = query.where(incidents.c.opened_at < until)
        with self.engine.connect() as conn:
            return self._with_timeline(conn, list(conn.execute(query).mappings()))

    def open_elevator_ids(self) -> set[str]:
        query = select(incidents.c.elevator_id).where(incidents.c.open_key.is_not(None))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def open_incidents_of(self, elevator_id: str) -> list[Incident]:
        return self.list_incidents(state="open", elevator_id=elevator_id)

    def companions_of(self, parent_id: str) -> list[Incident]:
        query = select(incidents).where(incidents.c.parent_id == parent_id)
        with self.engine.connect() as conn:
            return self._with_timeline(conn, list(conn.execute(query).mappings()))

    def add_incident_frames(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(incident_frames), list(rows))

    def incident_frames(self, incident_id: str) -> list[dict[str, Any]]:
        query = (
            select(incident_frames)
            .where(incident_frames.c.incident_id == incident_id)
            .order_by(incident_frames.c.received_at, incident_frames.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def add_audit(
        self, at: datetime, role: str, token_id: str, action: str, target: str, body: str
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit).values(
                    at=at, role=role, token_id=token_id, action=action, target=target, body=body
                )
            )

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(audit).order_by(audit.c.id.desc()).limit(limit)
            return [dict(r) for r in conn.execute(query).mappings()]

    @staticmethod
    def _incident_row(incident: Incident) -> dict[str, Any]:
        i = incident
        open_key = _open_key(i.elevator_id, i.kind, i.drill) if i.is_open else None
        return i.row() | {"open_key": open_key}

    @staticmethod
    def _add_timeline(conn: Connection, incident_id: str, entries: Sequence[TimelineEntry]) -> None:
        if entries:
            conn.execute(
                insert(timeline),
                [
                    {"incident_id": incident_id, "at": e.at, "what": e.what, "by": e.by}
                    for e in entries
                ],
            )

    @staticmethod
    def _with_timeline(conn: Connection, rows: Sequence[Any]) -> list[Incident]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        entries: dict[str, list[TimelineEntry]] = {i: [] for i in ids}
        query = (
            select(timeline)
            .where(timeline.c.incident_id.in_(ids))
            .order_by(timeline.c.at, timeline.c.id)
        )
        for t in conn.execute(query).mappings():
            entries[t["incident_id"]].append(TimelineEntry(t["at"], t["what"], t["by"]))
        return [
            replace(
                Incident(**{k: r[k] for k in _INCIDENT_FIELDS}), timeline=tuple(entries[r["id"]])
            )
            for r in rows
        ]


def open_store(url: str) -> Store:
    engine = _engine(url)
    migrate(engine)
    return Store(engine)


class StoreMissing(LookupError):
    """A reader was pointed at a store that holds no gateway data (no file, no schema)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url).render_as_string(hide_password=True)
        super().__init__(f"no gateway store at {self.url}")


def open_existing_store(url: str) -> Store:
    """`open_store` for readers (the report): a store that does not exist yet is refused,
    never created empty. A reachable one is brought to the newest schema as usual."""
    database = make_url(url).database
    if url.startswith("sqlite") and (not database or not Path(database).is_file()):
        raise StoreMissing(url)
    engine = _engine(url)
    try:
        if not inspect(engine).has_table(incidents.name):
            raise StoreMissing(url)
    except OperationalError:
        engine.dispose()
        raise StoreMissing(url) from None
    except StoreMissing:
        engine.dispose()
        raise
    migrate(engine)
    return Store(engine)

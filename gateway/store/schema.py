"""Table definitions: the one description of the relational schema.

Migrations under `migrations/versions/` create and change these tables; this module is what
queries are written against. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("topic", Text, nullable=False),
    Column("elevator_id", String(64)),
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
)

# The embedded time-series store, used when no InfluxDB-compatible endpoint is configured.
telemetry = Table(
    "telemetry",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("measurement", String(40), nullable=False),
    Column("elevator_id", String(64), nullable=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("line", Text, nullable=False),
    # A frame's identity (contract §1), null for points that are not frames (online, incident).
    Column("boot", BigInteger),
    Column("seq", BigInteger),
    Index("ix_telemetry_elevator_ts", "elevator_id", "ts_ns"),
    Index("ix_telemetry_ts", "ts_ns"),  # retention
    # Every frame once (contract §4), whatever is replayed after a crash.
    Index("ux_telemetry_frame", "elevator_id", "measurement", "boot", "seq", unique=True),
)


elevators = Table(
    "elevators",
    metadata,
    Column("elevator_id", String(64), primary_key=True),
    Column("site", Text),
    Column("district", Text),
    Column("address", Text),
    Column("maintenance_company", Text),
    Column("maintenance_phone", Text),  # its 24-hour line, on the public page
    Column("use_unit", Text),
    Column("inspection_due", Date),
    Column("last_maintenance", Date),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per incident; every clock is a stored deadline so a restart re-arms it.
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("elevator_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("incident_class", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("rule", Text),
    Column("source", String(16), nullable=False),
    Column("drill", Boolean, nullable=False, default=False),
    Column("parent_id", String(32), index=True),  # a companion's main incident
    Column("site", Text),
    Column("district", Text),
    Column("maintenance_company", Text),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("deadline_at", UtcDateTime, nullable=False),
    Column("warning_at", UtcDateTime, nullable=False),
    Column("ack_deadline_at", UtcDateTime, nullable=False),
    Column("report_deadline_at", UtcDateTime),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", Text),
    Column("dispatched_at", UtcDateTime),
    Column("crew_id", Text),
    Column("arrived_at", UtcDateTime),
    Column("arrival_reported_at", UtcDateTime),
    Column("arrival_telemetry_at", UtcDateTime),
    Column("released_at", UtcDateTime),
    Column("closed_at", UtcDateTime),
    Column("resolution", String(32)),
    Column("regulator_reported_at", UtcDateTime),
    Column("sla", String(16), nullable=False),
    # What the ticker has already done, so a restart neither repeats nor forgets it.
    Column("warned_at", UtcDateTime),
    Column("breach_alerted_at", UtcDateTime),
    Column("ack_alerts", Integer, nullable=False, default=0),
    Column("report_alerted_at", UtcDateTime),
    Column("next_due_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # What starts the arrival clock in the incident's district: the report or the dispatch.
    Column("clock_start", String(16), nullable=False, server_default="reported"),
    Column("people_trapped", Integer),
    Column("rescue_level", Integer),  # 1 maintenance unit, 2 rescue station, 3 fire/police
    # One open incident per elevator and kind, whatever process tries to open another.
    Column("open_key", String(140), unique=True),
    Index("ix_incidents_next_due", "next_due_at"),
    Index("ix_incidents_elevator", "elevator_id", "opened_at"),
    Index("ix_incidents_opened", "opened_at"),
)

timeline = Table(
    "incident_timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("what", Text, nullable=False),
    Column("by", Text, nullable=False),
)

# The black box: frames before and during an incident, for investigators.
incident_frames = Table(
    "incident_frames",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id"), nullable=False, index=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_id", String(16), nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("body", Text, nullable=False),
)

# What the gateway must publish, written in the same transaction as the change it reports,
# so an alert is neither lost nor invented by a crash; drained in order by `notify`.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("channel", String(16), nullable=False),  # mqtt | webhook
    Column("target", Text, nullable=False),  # topic or URL
    Column("payload", LargeBinary, nullable=False),
    Column("retain", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
)

# Public notices of an elevator out of service: why, and when it is expected back.
outage_notices = Table(
    "outage_notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("elevator_id", String(64), nullable=False),
    Column("posted_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("expected_return_at", UtcDateTime),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Index("ix_outage_notices_elevator", "elevator_id", "posted_at"),
)

# Gateways sharing one subscription's elevators: each renews its lease; the live members
# split the elevators between them, and a member whose lease expired has died.
gateway_members = Table(
    "gateway_members",
    metadata,
    Column("member_id", String(128), primary_key=True),
    Column("group_name", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_gateway_members_group", "group_name", "expires_at"),
)

# Each elevator's episodes, recorded from the stream as they happen (gateway/episodes.py):
# spans in one state (`ended_at` null while open) and moments (`alarm_test`). Never pruned:
# they are the compliance record, whatever the telemetry retention.
episodes = Table(
    "episodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("elevator_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("last_seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("elevator_id", "kind", "started_at", name="ux_episodes_start"),
    Index("ix_episodes_started", "started_at"),
    Index("ix_episodes_elevator", "elevator_id", "started_at"),
    Index("ix_episodes_ended", "ended_at"),
)

# When each elevator was last heard from (any frame), to a day: which registered
# elevators send no telemetry at all, whatever the time-series store.
telemetry_heard = Table(
    "telemetry_heard",
    metadata,
    Column("elevator_id", String(64), primary_key=True),
    Column("heard_at", UtcDateTime, nullable=False),
)

# Maintenance visits as the maintenance unit reports them (`POST .../maintenance`); the
# telemetry's sessions are their evidence. Kept 5 years: never pruned.
maintenance_records = Table(
    "maintenance_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("elevator_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("company", Text, nullable=False),
    Column("technician", Text, nullable=False),
    Column("items", Text, nullable=False),  # JSON list of strings
    Column("duration_min", Integer, nullable=False),
    Column("note", Text),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Index("ix_maintenance_records_elevator", "elevator_id", "at"),
    Index("ix_maintenance_records_at", "at"),
)

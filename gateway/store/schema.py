"""Table definitions: the one description of the relational schema.

Migrations under `migrations/versions/` create and change these tables; this module is what
queries are written against. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
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
    Index("ix_telemetry_elevator_ts", "elevator_id", "ts_ns"),
)

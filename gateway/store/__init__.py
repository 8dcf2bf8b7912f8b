"""The relational store: one SQLAlchemy Core layer for SQLite (embedded default) and PostgreSQL.

`open_store(url)` connects, brings the schema to the newest migration and returns a `Store`.
All SQL goes through SQLAlchemy expressions, so every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, func, insert, select

from gateway.store.schema import dead_letter, telemetry

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
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


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

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def dead_letter_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(dead_letter)).scalar_one()

    # -- embedded telemetry --------------------------------------------------------------
    def add_telemetry(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(telemetry), rows)

    def telemetry_lines(self, elevator_id: str | None = None) -> list[str]:
        query = select(telemetry.c.line).order_by(telemetry.c.ts_ns, telemetry.c.id)
        if elevator_id is not None:
            query = query.where(telemetry.c.elevator_id == elevator_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())


def open_store(url: str) -> Store:
    engine = _engine(url)
    migrate(engine)
    return Store(engine)

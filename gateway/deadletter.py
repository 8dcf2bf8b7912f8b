"""Rejected messages: counted by reason, logged once each, kept in a bounded table with their
raw bytes, and published to `gateway/deadletter` for whoever watches device health."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from gateway import metrics
from gateway.frames import Frame, Rejected, decode
from gateway.spool import Point
from gateway.store import Store
from gateway.tsdb import to_point

TagsFor = Callable[[str], str]

log = structlog.get_logger(__name__)

TOPIC = "gateway/deadletter"
_PUBLISHED_PAYLOAD_BYTES = 4096  # enough to diagnose; the table keeps the whole (≤ limit)

Publish = Callable[[str, bytes], None]


def _message(rejected: Rejected) -> bytes:
    return json.dumps(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": rejected.topic,
            "elevator_id": rejected.elevator_id,
            "received_at": rejected.received_at.isoformat(),
            "payload_size": len(rejected.payload),
            "payload_b64": base64.b64encode(rejected.payload[:_PUBLISHED_PAYLOAD_BYTES]).decode(),
        }
    ).encode()


class DeadLetter:
    def __init__(self, store: Store, publish: Publish, keep: int, max_payload_bytes: int) -> None:
        self._store = store
        self._publish = publish
        self._limit = keep
        self._max_payload = max_payload_bytes
        self._pending: list[Rejected] = []

    def add(self, rejected: Rejected, quiet: bool = False) -> None:
        """Count, log (unless `quiet`: a flood's repeats) and hold the rejection; it is
        durable once `take` has handed it to `keep`."""
        metrics.FRAMES_REJECTED.labels(rejected.reason).inc()
        if not quiet:
            log.warning(
                "frame_rejected",
                reason=rejected.reason,
                detail=rejected.detail,
                topic=rejected.topic[:200],
                elevator_id=rejected.elevator_id,
                payload_size=len(rejected.payload),
            )
        self._pending.append(rejected)

    def take(self) -> list[Rejected]:
        """The rejections added since the last call, for `keep` (on the writer's thread: the
        pipeline's never waits on the database)."""
        pending, self._pending = self._pending, []
        return pending

    def refused_by_store(self, points: Sequence[Point], answer: str, at: datetime) -> None:
        """Points the time-series store refused: kept at once, from the writer's thread (the
        frames they came from are acknowledged once this returns)."""
        refused = [
            Rejected("tsdb_refused", answer, f"tsdb/{p.measurement}", p.line.encode(), at,
                     p.elevator_id)
            for p in points
        ]  # fmt: skip
        metrics.FRAMES_REJECTED.labels("tsdb_refused").inc(len(refused))
        log.error("tsdb_refused_points", points=len(points), answer=answer)
        self.keep(refused)

    def keep(self, rejected: Sequence[Rejected]) -> None:
        """Store the rejections (durably), then publish them."""
        if not rejected:
            return
        self._store.add_dead_letters(
            [
                {
                    "received_at": r.received_at,
                    "topic": r.topic[:1000],
                    "elevator_id": r.elevator_id,
                    "reason": r.reason,
                    "detail": r.detail[:2000],
                    "payload": r.payload[: self._max_payload],
                    "payload_size": len(r.payload),
                }
                for r in rejected
            ],
            keep=self._limit,
        )
        for r in rejected:
            self._publish(TOPIC, _message(r))


# Rejections whose message was fine and can be stored once the cause is gone: a device's
# burst beyond the rate limit, a point the store refused (e.g. past its retention, until the
# retention is raised).
REPLAYABLE = ("rate_limited", "tsdb_refused")


def replay_points(rows: Sequence[dict[str, Any]], tags_for: TagsFor) -> list[tuple[int, Point]]:
    """The points of replayable dead letters, with their record's id: a refused frame decoded
    again at its original receive time, or the line the store refused, as it was."""
    out: list[tuple[int, Point]] = []
    for row in rows:
        payload = bytes(row["payload"])
        if row["reason"] == "tsdb_refused":
            line = payload.decode()
            ts_ns = int(line.rsplit(" ", 1)[1])
            point = Point(row["topic"].removeprefix("tsdb/"), row["elevator_id"], ts_ns, line)
            out.append((row["id"], point))
        elif isinstance(frame := decode(row["topic"], payload, row["received_at"]), Frame):
            out.append((row["id"], to_point(frame, tags_for(frame.elevator_id))))
    return out

"""The flow of one message, in order: decode → dedup → notes → consumers → batched telemetry.

`process` handles one message at once (so detection sees it without waiting for a batch);
telemetry points, rejections and acknowledgements wait in the batch until `take` hands them
on (the gateway's writer thread makes the first two durable, then acknowledges), or `flush`
does all of it here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final, NamedTuple

import structlog

from gateway import metrics
from gateway.deadletter import DeadLetter, TagsFor
from gateway.dedup import Dedup
from gateway.frames import KINDS, MAX_PAYLOAD_BYTES, Frame, Rejected, decode, elevator_of
from gateway.ingest import AckToken, RawMessage
from gateway.profiles import Profiles
from gateway.ratelimit import RateLimiter
from gateway.spool import Point
from gateway.tsdb import DurableWriter, to_point

log = structlog.get_logger(__name__)

CLOCK_SKEW_LIMIT_S: Final = timedelta(minutes=5).total_seconds()

Consumer = Callable[[Frame], None]


class Batch(NamedTuple):
    """What `take` hands on: durable first (the points, the rejections), then acknowledged."""

    points: list[Point]
    rejected: list[Rejected]
    acks: list[AckToken]


class Pipeline:
    def __init__(
        self,
        writer: DurableWriter,
        deadletter: DeadLetter,
        consumers: Sequence[Consumer] = (),
        tags_for: TagsFor = lambda _eid: "",
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        limiter: RateLimiter | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self._writer = writer
        self._deadletter = deadletter
        self._consumers = tuple(consumers)
        self._tags_for = tags_for
        self._max_payload = max_payload_bytes
        # `is None`, not `or`: a limiter with no buckets yet has len() 0 and is falsy.
        self._limiter = RateLimiter(rate=20.0, burst=600.0) if limiter is None else limiter
        self._dedup = Dedup()
        # Device profiles: other payload formats mapped onto frames, and the events their
        # fault sets imply (gateway/profiles). Without them, the contract alone.
        self._elevator_of = profiles.elevator_of if profiles else elevator_of
        self._decode = profiles.decode if profiles else decode
        self._derive = profiles.derive if profiles else lambda _frame: ()
        self._skewed: set[str] = set()
        # Frames refused per elevator since start (only babbling devices appear), for health.
        self.rate_limited: dict[str, int] = {}
        self._last_online: dict[str, bool] = {}
        self._points: list[Point] = []
        self._acks: list[AckToken] = []
        # Counted here, published to Prometheus per batch of messages (`publish_counts`): its
        # counters take a lock on every inc, which cost 1 µs per frame.
        self._received = dict.fromkeys(KINDS, 0)
        self._accepted = dict.fromkeys(KINDS, 0)

    @property
    def pending(self) -> int:
        """Messages processed and not yet acknowledged."""
        return len(self._acks)

    @property
    def tracked_elevators(self) -> int:
        return len(self._dedup)

    def forget(self, elevator_ids: Sequence[str]) -> None:
        """Drop what is kept of elevators long silent (see RuleEngine.evict)."""
        self._dedup.forget(elevator_ids)
        for elevator_id in elevator_ids:
            self._last_online.pop(elevator_id, None)
            self._skewed.discard(elevator_id)

    def online(self, elevator_id: str) -> bool | None:
        """The last `online` state the elevator's device announced, if any."""
        return self._last_online.get(elevator_id)

    def process(self, raw: RawMessage) -> None:
        self._acks.append(raw.ack)
        elevator_id = self._elevator_of(raw.topic)  # None: decode rejects the topic
        result = self._decode(
            raw.topic, raw.payload, raw.received_at, self._max_payload, elevator_id
        )
        if isinstance(result, Rejected):
            self._deadletter.add(result)
            return
        self._received[result.kind] += 1
        if result.body is not None and not self._within_rate(raw, result):
            return
        if not self._is_new(result):
            return
        self._accepted[result.kind] += 1
        self._consume(result)
        for derived in self._derive(result):  # a profile's fault events, after their frame
            self._accepted[derived.kind] += 1
            self._consume(derived)

    def _consume(self, frame: Frame) -> None:
        for consume in self._consumers:
            try:
                consume(frame)
            except Exception:
                # A bug in detection must not stop ingestion: the frame is still stored.
                metrics.CONSUMER_ERRORS.inc()
                log.exception("consumer_failed", elevator_id=frame.elevator_id, kind=frame.kind)
        self._points.append(to_point(frame, self._tags_for(frame.elevator_id)))

    def take(self) -> Batch:
        """Everything processed so far: the points and rejections to make durable, and the
        acknowledgements due once they are. Touches no store: the pipeline's thread never
        waits on one."""
        batch = Batch(self._points, self._deadletter.take(), self._acks)
        self._points, self._acks = [], []
        return batch

    def flush(self) -> list[AckToken]:
        """`take`, and make it durable here and now; the acknowledgements now due."""
        points, rejected, acks = self.take()
        self._deadletter.keep(rejected)
        self._writer.write(points)
        return acks

    def publish_counts(self) -> None:
        """The frames counted since the last call, to Prometheus (the worker calls it after
        each batch of messages it receives)."""
        for counts, counter in (
            (self._received, metrics.FRAMES_IN),
            (self._accepted, metrics.FRAMES_ACCEPTED),
        ):
            for kind, n in counts.items():
                if n:
                    counter.labels(kind).inc(n)
                    counts[kind] = 0

    def _within_rate(self, raw: RawMessage, frame: Frame) -> bool:
        """Judged on the device's own clock (its `ts`), so a backlog flushed at once is
        stored in full. A refused frame was acknowledged like any other: every one keeps its
        bytes in the dead letter, to be replayed; only the first of an episode is logged."""
        received_s = raw.received_at.timestamp()
        device_s = received_s - frame.lag_s
        decision = self._limiter.check(frame.elevator_id, device_s, received_s)
        if decision.allowed:
            return True
        self.rate_limited[frame.elevator_id] = self.rate_limited.get(frame.elevator_id, 0) + 1
        metrics.RATE_LIMITED.labels(frame.elevator_id).inc()
        rejected = Rejected(
            "rate_limited",
            "more frames per second of the device's own clock than the per-elevator limit",
            raw.topic,
            raw.payload,
            raw.received_at,
            frame.elevator_id,
        )
        self._deadletter.add(rejected, quiet=not decision.first_refusal)
        return False

    def _is_new(self, frame: Frame) -> bool:
        body = frame.body
        if body is None:  # online: a retained state, redelivered on every resubscribe
            if self._last_online.get(frame.elevator_id) == frame.online:
                metrics.DUPLICATES.inc()
                return False
            self._last_online[frame.elevator_id] = bool(frame.online)
            return True
        verdict = self._dedup.check(frame.elevator_id, body.boot, body.seq)
        if not verdict.new:
            metrics.DUPLICATES.inc()
            return False
        if verdict.gap:
            metrics.SEQ_GAPS.inc(verdict.gap)
            log.info(
                "seq_gap",
                elevator_id=frame.elevator_id,
                boot=body.boot,
                seq=body.seq,
                missing=verdict.gap,
            )
        self._note_skew(frame)
        return True

    def _note_skew(self, frame: Frame) -> None:
        skewed = abs(frame.lag_s) > CLOCK_SKEW_LIMIT_S
        if skewed:
            metrics.CLOCK_SKEW.inc()
        # Log the change of state, not every frame of a device whose clock is off.
        if skewed and frame.elevator_id not in self._skewed:
            self._skewed.add(frame.elevator_id)
            log.warning(
                "device_clock_skew",
                elevator_id=frame.elevator_id,
                skew_s=round(-frame.lag_s, 1),
            )
        elif not skewed and frame.elevator_id in self._skewed:
            self._skewed.discard(frame.elevator_id)
            log.info("device_clock_ok", elevator_id=frame.elevator_id)

"""The telemetry sink: frames as line protocol (contract §4), written durably.

A `Sink` is `write(points)` + `close()`: `InfluxSink` (any InfluxDB-compatible
`/api/v2/write`, through influxdb-client) or `EmbeddedSink` (the relational store, when no
endpoint is configured). `DurableWriter` puts a disk spool in front: `write` returns only
once the points are in the store or on disk, which is when MQTT may acknowledge them.

influxdb-client's own batching API is not used: it buffers in memory, retries for a while
and then gives up, so "written" would not mean durable. We batch ourselves and call its
synchronous API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final, Protocol

import msgspec
import structlog
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from gateway import metrics
from gateway.clock import Clock
from gateway.frames import EventBody, Frame, StatusBody
from gateway.incidents.model import Incident
from gateway.spool import Point, Spool
from gateway.store import Store

log = structlog.get_logger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEFAULT_RETENTION_S: Final = 30 * 86_400.0
_PRUNE_CHUNK: Final = 10_000
_PRUNE_EVERY_S: Final = 600.0
_REPLAY_POINTS: Final = 5000  # per write when replaying the spool
# Points per write request at most (about 7 MB of lines: under InfluxDB's 25 MB and
# VictoriaMetrics' 32 MB request limits) when batches that waited for a slow store go together.
_CHUNK_POINTS: Final = 20_000
_DOOR_CODE = {"closed": 0, "opening": 1, "open": 2, "closing": 3, "fault": 4}


class SinkError(Exception):
    """The store did not take the write: it is down, slow or misconfigured; try again."""


class Refused(SinkError):
    """The store answered that it will never take this batch as it is (400, 413, 422: a
    point older than the retention, a field type conflict, a batch too large). Retrying the
    same batch is pointless; its points are written apart to find the ones refused."""


# 4xx answers about the batch itself. Others (401, 403, 404: credentials or bucket; 429: slow
# down) say nothing about the points, so they count as "store down" and the batch is spooled.
_REFUSED_STATUS: Final = frozenset({400, 413, 422})


# -- line protocol ---------------------------------------------------------------------------
# A tag can carry no line break (the spec has no escape for one): control characters become
# spaces, which are escaped with the rest. The registry refuses them at input anyway.
_TAG_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "} | {chr(c): "\\ " for c in [*range(32), 127]}
)


def escape_tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def _str_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_BOOL: Final = ("false", "true")  # indexed by a bool


def _ns(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_KNOWN_FIELDS: Final = {
    StatusBody: frozenset(StatusBody.__struct_fields__),
    EventBody: frozenset(EventBody.__struct_fields__),
}
# The double quotes of a status body with no field beyond the contract's (two per key and per
# string value, none of which can hold a quote): more means extra fields.
_STATUS_QUOTES: Final = msgspec.json.encode(
    StatusBody(
        v=1, elevator_id="E", seq=0, boot=0, ts=_EPOCH, floor=0, moving=False,
        direction="none", speed_mps=0.0, door="closed", door_zone=True, occupied=False,
        load_pct=0.0, mode="normal", alarm_button=False, power="mains", safety_circuit="closed",
    )
).count(b'"')  # fmt: skip


def _extra(frame: Frame) -> str:
    """The fields a device sent beyond the contract's (kept, contract §1), as the string
    field `extra` (JSON), or "". A status body is checked by counting its quotes, so the
    usual frame costs no second parse."""
    body, payload = frame.body, frame.payload
    if not payload or (type(body) is StatusBody and payload.count(b'"') == _STATUS_QUOTES):
        return ""
    known = _KNOWN_FIELDS[type(body)]
    extra = {k: v for k, v in json.loads(payload).items() if k not in known}
    if not extra:
        return ""
    return ",extra=" + _str_field(json.dumps(extra, separators=(",", ":"), ensure_ascii=False))


def to_point(frame: Frame, extra_tags: str = "") -> Point:
    """The contract's line for a valid frame; `extra_tags` is `,k=v...`, already escaped.

    `online` frames (no device time) become an `elevator_online` point at receive time.
    """
    eid = frame.elevator_id
    body = frame.body
    if isinstance(body, StatusBody):
        ts_ns = _ns(body.ts)
        lag = frame.lag_s * 1000
        line = (
            f"elevator_status,elevator_id={eid}{extra_tags} floor={body.floor}i,"
            f'moving={_BOOL[body.moving]},direction="{body.direction}",'
            f'speed_mps={body.speed_mps!r},door="{body.door}",'
            f"door_code={_DOOR_CODE[body.door]}i,door_zone={_BOOL[body.door_zone]},"
            f"occupied={_BOOL[body.occupied]},load_pct={body.load_pct!r},"
            f'mode="{body.mode}",alarm_button={_BOOL[body.alarm_button]},'
            f'power="{body.power}",safety_circuit="{body.safety_circuit}",'
            f"seq={body.seq}i,rx_lag_ms={lag!r}{_extra(frame)} {ts_ns}"
        )
        return Point("elevator_status", eid, ts_ns, line, body.boot, body.seq)
    if isinstance(body, EventBody):
        ts_ns = _ns(body.ts)
        lag = frame.lag_s * 1000
        detail = _str_field(json.dumps(body.detail, separators=(",", ":")) if body.detail else "")
        line = (
            f"elevator_event,elevator_id={eid}{extra_tags},code={body.code},state={body.state} "
            f"seq={body.seq}i,detail={detail},rx_lag_ms={lag!r}{_extra(frame)} {ts_ns}"
        )
        if not frame.payload:  # made up (a profile's fault set): may share its frame's seq
            return Point("elevator_event", eid, ts_ns, line)
        return Point("elevator_event", eid, ts_ns, line, body.boot, body.seq)
    ts_ns = _ns(frame.received_at)
    line = (
        f"elevator_online,elevator_id={eid}{extra_tags} online={_BOOL[bool(frame.online)]} {ts_ns}"
    )
    return Point("elevator_online", eid, ts_ns, line)


def incident_point(incident: Incident) -> Point:
    """The contract's `incident` measurement: one point per change, at the change's time."""
    ts_ns = _ns(incident.updated_at)
    fields = f"state={_str_field(incident.state)}"
    if incident.arrival_s is not None:
        fields += f",arrival_s={float(incident.arrival_s)!r}"
    fields += f",breached={_BOOL[incident.sla == 'breached']}"
    line = (
        f"incident,elevator_id={incident.elevator_id},kind={escape_tag(incident.kind)},"
        f"severity={incident.severity} {fields} {ts_ns}"
    )
    return Point("incident", incident.elevator_id, ts_ns, line)


# -- sinks -----------------------------------------------------------------------------------
class Sink(Protocol):
    # Write requests it takes at once: a store that is slow to answer (not to parse) still
    # takes the stream when the chunks of a large batch go side by side.
    concurrent_writes: int

    def write(self, points: Sequence[Point]) -> None: ...

    def close(self) -> None: ...


class InfluxSink:
    concurrent_writes = 8  # within influxdb-client's connection pool (cpu_count * 5)

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float) -> None:
        # retries=False: a failed write goes to our spool at once instead of blocking here.
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self.requests = 0  # write requests sent, for the write-efficiency benchmark
        self.bytes_sent = 0

    def write(self, points: Sequence[Point]) -> None:
        body = "\n".join(p.line for p in points)
        try:
            self._api.write(self._bucket, self._org, body, write_precision=WritePrecision.NS)
        except ApiException as exc:
            answer = f"HTTP {exc.status}: {_text(exc.body) or exc.reason}"[:500]
            raise (Refused if exc.status in _REFUSED_STATUS else SinkError)(answer) from None
        except Exception as exc:
            raise SinkError(f"{type(exc).__name__}: {exc}"[:500]) from None
        self.requests += 1
        self.bytes_sent += len(body)

    def close(self) -> None:
        self._client.close()


def _text(body: object) -> str:
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")


class EmbeddedSink:
    """The relational store as the time-series store: each frame once, raw telemetry kept
    for `retention_s` (pruned from the writer's thread, a bounded chunk per write, so a
    large first pruning never holds a batch up for long)."""

    concurrent_writes = 1  # one writer at a time on SQLite

    def __init__(
        self, store: Store, clock: Clock, retention_s: float = _DEFAULT_RETENTION_S
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention_ns = int(retention_s * 1e9)
        self._prune_at = 0.0  # monotonic; 0: at the first write

    def write(self, points: Sequence[Point]) -> None:
        try:
            self._store.add_telemetry(msgspec.structs.asdict(p) for p in points)
            if time.monotonic() >= self._prune_at:
                self._prune()
        except Exception as exc:
            raise SinkError(f"{type(exc).__name__}: {exc}"[:500]) from None

    def _prune(self) -> None:
        before_ns = _ns(self._clock.now()) - self._retention_ns
        pruned = self._store.prune_telemetry(before_ns, _PRUNE_CHUNK)
        # A full chunk: more to go, at the next write; otherwise again in a while.
        self._prune_at = time.monotonic() + (0 if pruned == _PRUNE_CHUNK else _PRUNE_EVERY_S)
        if pruned:
            log.info("telemetry_pruned", points=pruned, retention_days=self._retention_ns / 8.64e13)

    def close(self) -> None:
        pass


OnRefused = Callable[[Sequence[Point], str], None]


def _log_refused(points: Sequence[Point], answer: str) -> None:
    log.error("tsdb_refused_points", points=len(points), answer=answer)


class _Unwritten(Exception):
    """The sink went down part way: `points` were not written (in order)."""

    def __init__(self, cause: SinkError, points: list[Point]) -> None:
        super().__init__(str(cause))
        self.points = points


class DurableWriter:
    """Writes to the sink, or to the spool while the sink is down or a backlog remains.

    A background thread replays the spool, oldest first, and probes a down sink with
    backoff. New points go to the spool while it holds a backlog, so order is kept.

    A batch the store refuses (`Refused`) is split in halves until the refused points stand
    alone: those go to `on_refused` (the dead letter, with the store's answer), the rest is
    written. So one bad point costs itself, never the telemetry behind it.
    """

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        clock: Clock,
        on_refused: OnRefused = _log_refused,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._sink = sink
        self._spool = spool
        self._clock = clock
        self._on_refused = on_refused
        self._max_backoff = max_backoff_s
        self._lock = threading.Lock()  # orders "write directly" against "spool drained"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._up = not spool  # a backlog left by the last run is replayed first
        metrics.TSDB_UP.set(self._up)
        # Computed at each scrape: the age grows while nothing new is spooled.
        metrics.SPOOL_AGE.set_function(lambda: spool.oldest_age_s(clock.now()))
        self._pool = ThreadPoolExecutor(sink.concurrent_writes, thread_name_prefix="tsdb-write")
        self._replayer = threading.Thread(
            target=self._replay_loop, name="spool-replay", daemon=True
        )
        self._replayer.start()

    @property
    def healthy(self) -> bool:
        return self._up

    def write(self, points: Sequence[Point]) -> None:
        """Returns once `points` are durable (in the store or on disk)."""
        if not points:
            return
        with self._lock:
            if self._up:
                try:
                    self._write_isolating(points)
                    return
                except _Unwritten as exc:
                    points = exc.points
                    self._mark_down(exc)
            self._spool.append(points, self._clock.now())
        self._publish_spool_metrics()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._replayer.join(timeout=10)
        self._pool.shutdown()
        self._sink.close()

    def _timed_write(self, points: Sequence[Point]) -> None:
        with metrics.TSDB_WRITE_SECONDS.time():
            self._sink.write(points)
        metrics.TSDB_POINTS.inc(len(points))

    def _write_isolating(self, points: Sequence[Point]) -> None:
        """Write `points`, handing the ones the store refuses to `on_refused`; `_Unwritten`
        with what is left if the store goes down meanwhile."""
        todo = [list(points[i : i + _CHUNK_POINTS]) for i in range(0, len(points), _CHUNK_POINTS)]
        if len(todo) > 1 and self._sink.concurrent_writes > 1:
            failed = [
                (chunk, exc)
                for chunk, exc in zip(todo, self._side_by_side(todo), strict=True)
                if exc is not None
            ]
            down = [exc for _, exc in failed if not isinstance(exc, Refused)]
            if down:  # no second try: a hung store would hold the batch a timeout longer
                raise _Unwritten(down[0], [p for chunk, _ in failed for p in chunk])
            todo = [chunk for chunk, _ in failed]  # refused: isolated one request at a time
        todo.reverse()  # a stack of batches, the next one last
        while todo:
            batch = todo.pop()
            try:
                self._timed_write(batch)
            except Refused as exc:
                if len(batch) > 1:
                    half = len(batch) // 2
                    todo += [batch[half:], batch[:half]]
                    continue
                metrics.TSDB_REFUSED.inc()
                self._on_refused(batch, str(exc))
            except SinkError as exc:
                raise _Unwritten(exc, [*batch, *(p for b in reversed(todo) for p in b)]) from None

    def _side_by_side(self, chunks: list[list[Point]]) -> list[SinkError | None]:
        """Each chunk written on the pool; what each one raised (anything but a SinkError
        is a bug, and raised here)."""
        outcomes = [
            f.exception() for f in [self._pool.submit(self._timed_write, c) for c in chunks]
        ]
        for exc in outcomes:
            if exc is not None and not isinstance(exc, SinkError):
                raise exc
        return outcomes  # type: ignore[return-value]

    def _mark_down(self, exc: Exception) -> None:
        metrics.TSDB_WRITE_ERRORS.inc()
        if self._up:
            log.warning("tsdb_down_spooling", error=str(exc))
        self._up = False
        metrics.TSDB_UP.set(0)
        self._wake.set()

    def _replay_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if self._up:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                replayed = self._replay_one()
            except Exception:
                # Never let the replayer die: the spool would fill and drop while health
                # stayed "down" for good. Log, back off, try again.
                log.exception("spool_replay_failed")
                replayed = False
            if replayed:
                backoff = 0.5
                continue
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _replay_one(self) -> bool:
        """Replay the oldest segments, several in one write (a backlog of small batches
        catches up in a few requests); True if the sink took them (or nothing was left)."""
        segments = self._spool.oldest(_REPLAY_POINTS)
        if not segments:
            with self._lock:
                if not self._spool:  # still empty under the lock: safe to write directly
                    self._up = True
                    metrics.TSDB_UP.set(1)
                    log.info("tsdb_up_spool_drained")
            return True
        try:
            self._write_isolating([p for _number, points in segments for p in points])
        except _Unwritten as exc:
            self._keep_only(segments, len(exc.points))
            metrics.TSDB_WRITE_ERRORS.inc()
            log.debug("tsdb_still_down", error=str(exc))
            return False
        self._keep_only(segments, 0)
        return True

    def _keep_only(self, segments: list[tuple[int, list[Point]]], unwritten: int) -> None:
        """Forget the replayed `segments` but for their last `unwritten` points (what the
        sink did not take, always a tail: points are written in order)."""
        for number, points in reversed(segments):
            if unwritten >= len(points):
                unwritten -= len(points)
            elif unwritten:
                self._spool.rewrite(number, points[-unwritten:])
                unwritten = 0
            else:
                self._spool.remove(number)
        self._publish_spool_metrics()

    def _publish_spool_metrics(self) -> None:
        metrics.SPOOL_DEPTH.set(self._spool.depth)
        metrics.SPOOL_BYTES.set(self._spool.size_bytes)

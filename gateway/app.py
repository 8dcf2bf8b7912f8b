"""The running gateway: builds every part from the settings, starts and stops them in one place.

Threads: one worker thread takes the received messages from the ingest session (libmosquitto:
reads the receiver process's journal; paho: empties the inbox its network thread fills), runs
the pipeline and the rules and cuts batches; the incidents' thread (`IncidentRunner`) does
what the incidents must with the frames and alerts, in order, so a database that stops
answering holds neither frames nor rules; a writer thread writes each batch to the store and
then acknowledges it (once the incidents' thread has written its black box), so frames keep
being processed (and alerts raised) while a batch is on its way to the store. The spool
replayer and the HTTP server have their own.
"""

from __future__ import annotations

import collections
import gc
import queue
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self
from zoneinfo import ZoneInfo

import structlog
import uvicorn

from gateway import metrics
from gateway.api import create_app
from gateway.api.auth import TokenBook
from gateway.api.deps import Context
from gateway.clock import Clock, RealClock
from gateway.cluster import Partition
from gateway.deadletter import DeadLetter
from gateway.episodes import Recorder
from gateway.frames import Frame
from gateway.incidents.runner import Forget, IncidentRunner, Work
from gateway.incidents.service import IncidentService, Policy
from gateway.incidents.sla import Limits
from gateway.ingest import Publisher, RawMessage, TlsFiles, open_session
from gateway.notify import Notifier, WebhookPolicy, endpoint_names
from gateway.pipeline import Batch, Pipeline
from gateway.profiles import Profiles
from gateway.profiles.faults import Active
from gateway.ratelimit import RateLimiter
from gateway.registry import RegistryCache
from gateway.rules import Alert, RuleEngine, RuleError, load_rules
from gateway.rules.engine import SITE_RULE
from gateway.settings import Settings, redact_url, tokens_of
from gateway.spool import Point, Spool
from gateway.store import open_store
from gateway.tsdb import DurableWriter, EmbeddedSink, InfluxSink, Sink, incident_point

log = structlog.get_logger(__name__)

_STOP = object()
_RETRY_FLUSH_S = 1.0
_REGISTRY_REFRESH_S = 60.0
_EVICT_EVERY = timedelta(minutes=1)
_SWITCH_INTERVAL_S = 0.001


class StartError(RuntimeError):
    """A part of the gateway could not start; the message says which."""


class Gateway:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or RealClock()
        self._worker = threading.Thread(target=self._work, name="pipeline", daemon=True)
        # One batch waiting while one is written, and what was cut since on the worker
        # (`_hand_over`): bounded, so a store that cannot keep up at all holds the worker.
        self._batches: queue.Queue[object] = queue.Queue(maxsize=1)
        self._waiting = Batch([], [], [])
        self._waiting_faults: dict[str, Active] | None = None
        # The `incident` series: points of incident changes (any thread, under the incident
        # lock: an append, never a write) that go out with the next batch.
        self._incident_points: collections.deque[Point] = collections.deque()
        self._for_incidents: list[Work] = []  # handed to the incidents' thread each round
        # Set by the incidents' thread once it is done with what came before the batch waiting
        # in `_waiting` (its black box written): that batch may be acknowledged then.
        self._flushed: threading.Event | None = None
        self._write_thread = threading.Thread(
            target=self._write_batches, name="writer", daemon=True
        )
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._registry_thread = threading.Thread(
            target=self._refresh_registry, name="registry", daemon=True
        )
        self._reload_rules = threading.Event()
        self.tokens = TokenBook(tokens_of(settings))  # rotated on SIGHUP, see the CLI
        self._stopping = threading.Event()
        self._seen_up_to = self.clock.now()
        self._evict_at = self.clock.now() + _EVICT_EVERY
        self._caught_up = True  # the last look at the session found nothing waiting

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def start(self) -> Self:
        s = self.settings
        rules = load_rules(s.rules_dir)  # first: a bad rule file must stop us before anything opens
        self.profiles = Profiles.load(s.profiles_dir, s.spool_dir / "profile_faults.json")
        self.store = open_store(s.store_url)
        sink: Sink = (
            InfluxSink(s.tsdb_url, s.tsdb_token, s.tsdb_org, s.tsdb_bucket, s.tsdb_timeout_s)
            if s.tsdb_url
            else EmbeddedSink(self.store, self.clock, s.telemetry_retention_days * 86_400)
        )
        tls = TlsFiles(s.mqtt_ca_file, s.mqtt_cert_file, s.mqtt_key_file)
        self.publisher = Publisher(s.mqtt_url, f"{s.mqtt_client_id}-pub", tls)
        self.deadletter = DeadLetter(
            self.store, self._publish, s.deadletter_keep, s.max_payload_bytes
        )
        self.spool = Spool(s.spool_dir, s.spool_max_bytes, metrics.SPOOL_DROPPED.inc)
        self.writer = DurableWriter(
            sink, self.spool, self.clock,
            on_refused=lambda points, answer: self.deadletter.refused_by_store(
                points, answer, self.clock.now()
            ),
        )  # fmt: skip
        self.notifier = Notifier(
            self.store, self.publisher, self.clock, s.webhook_secret,
            webhooks=endpoint_names({
                "alert": s.alert_webhooks, "level2": s.level2_webhooks,
                "regulator": s.regulator_webhooks,
            }),
            webhook_policy=WebhookPolicy(
                s.webhook_timeout_s, s.webhook_max_backoff_s, s.webhook_max_attempts,
                s.webhook_max_age_s,
            ),
        )  # fmt: skip
        self.incidents = IncidentService(
            self.store, policy(s), self.notifier.wake,
            on_change=lambda incident: self._incident_points.append(incident_point(incident)),
        )  # fmt: skip
        self.incident_runner = IncidentRunner(self.incidents, Recorder(self.store), self._stopping)
        self.registry = RegistryCache()
        self.registry.load(self.store.all_elevators())
        # In a cluster group, this gateway processes its share of the elevators only; it
        # learns the other members before the first frame.
        self.partition = (
            Partition(
                self.store,
                s.cluster_group,
                s.mqtt_client_id,
                self.clock,
                s.cluster_lease_s,
                s.cluster_max_held,
            )
            if s.cluster_group
            else None
        )
        if self.partition is not None:
            self.partition.renew()
        self.rules = RuleEngine(rules, site_of=self.registry.site_of)
        self.pipeline = Pipeline(
            self.writer,
            self.deadletter,
            # The black box records the frame before the rules can open an incident with it.
            consumers=[self._for_incidents_frame, self._detect],
            tags_for=self.registry.tags_for,
            max_payload_bytes=s.max_payload_bytes,
            limiter=RateLimiter(s.rate_limit_per_s, s.rate_limit_burst),
            profiles=self.profiles,
        )
        self.session = open_session(
            s.mqtt_client,
            s.mqtt_url,
            s.mqtt_client_id,
            self.clock,
            journal_dir=s.spool_dir / "journal",
            journal_fsync_interval_s=s.journal_fsync_interval_s,
            topic_prefix=s.mqtt_topic_prefix,
            receive_window=s.mqtt_receive_window,
            session_expiry_s=s.mqtt_session_expiry_s,
            keepalive_s=s.mqtt_keepalive_s,
            tls=tls,
            log_level=s.log_level,
            extra_topics=self.profiles.subscriptions,
        )
        self.publisher.start()
        self.notifier.start()
        self.incident_runner.start()
        self._write_thread.start()
        self._registry_thread.start()
        self.session.start()
        self._worker.start()
        self._start_http()
        # What start-up made (modules, the API's schemas, the rules, the registry) lives as
        # long as the process: out of the collector's sight, a full collection scans only
        # what came after. It took 13% of the time draining a backlog, in pauses of up to
        # 75 ms, each one added to an alert's latency. (Garbage collected first, not kept.)
        gc.collect()
        gc.freeze()
        # An alert passes several threads (pipeline, notifier, the publisher's network loop),
        # each waiting for the GIL while the pipeline is busy: up to the switch interval per
        # hand-over (5 ms by default).
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        log.info(
            "gateway_started",
            mqtt=redact_url(s.mqtt_url),
            client_id=s.mqtt_client_id,
            tsdb=redact_url(s.tsdb_url) or "embedded",
            store=redact_url(s.store_url),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Process what was taken in, make it durable, acknowledge it, then disconnect (what
        is still unread is acknowledged never, so comes again: broker or journal)."""
        self._stopping.set()
        self._worker.join()
        self._write_thread.join()
        self._registry_thread.join()
        self.incident_runner.stop()
        self.session.close()
        if self.partition is not None:
            self.partition.leave()  # the others take our elevators over now, not at expiry
        self.writer.close()
        self.notifier.close()
        self.publisher.close()
        if self._http is not None and self._http_thread is not None:
            self._http.should_exit = True
            self._http_thread.join(timeout=10)
        self.store.close()
        log.info("gateway_stopped")

    def health(self) -> dict[str, object]:
        working = (
            self._worker.is_alive()
            and self._write_thread.is_alive()
            and self.incident_runner.is_alive()
        )
        return {
            "status": "ok" if working else "failing",
            "pipeline": working,
            "broker": self.session.connected,
            "tsdb": self.writer.healthy,
            "store": self.store.ping(),
            "spool_points": self.spool.depth,
            "spool_oldest_age_s": round(self.spool.oldest_age_s(self.clock.now()), 3),
            # Refused by the rate limit, each kept in the dead letter: the worst devices.
            "rate_limited": dict(
                sorted(self.pipeline.rate_limited.items(), key=lambda kv: -kv[1])[:10]
            ),
            "webhooks": self.notifier.webhooks(),
        }

    # -- the worker --------------------------------------------------------------------------
    def _owns(self, elevator_id: str) -> bool:
        return self.partition is None or self.partition.owns(elevator_id)

    def _takes(self, raw: RawMessage) -> bool:
        """Whether this gateway processes the message; another cluster member's frame is
        held for a takeover and acknowledged at once (that member acknowledges its own),
        costing no pipeline work."""
        if self.partition is None:
            return True
        elevator_id = self.profiles.elevator_of(raw.topic)
        if elevator_id is None:
            return True
        if self.partition.take_or_hold(elevator_id, raw):
            return True
        self.session.ack([raw.ack])
        return False

    def _publish(self, topic: str, payload: bytes) -> None:
        # QoS 0: the dead-letter table is the durable record and the topic a live feed; at
        # QoS 1 the acknowledgements of a flood of rejections took 40% of our throughput.
        self.publisher.publish(topic, payload, qos=0)

    def live(self, elevator_id: str) -> dict[str, object]:
        return {
            "online": self.pipeline.online(elevator_id),
            "last_frame": self.incidents.last_frame(elevator_id),
        }

    def reload_rules(self) -> None:
        """Ask for the rule files to be read again (on SIGHUP); done on the worker thread."""
        self._reload_rules.set()

    def _detect(self, frame: Frame) -> None:
        alerts = self.rules.observe(frame, frame.received_at)
        if alerts:  # most frames raise none: no generator built for them
            self._raise(alerts)

    def _raise(self, alerts: Iterable[Alert]) -> None:
        self._for_incidents.extend(a for a in alerts if self._worth_raising(a))

    def _for_incidents_frame(self, frame: Frame) -> None:
        self._for_incidents.append(frame)

    def _hand_work(self) -> None:
        """This round's frames, alerts and ticks to the incidents' thread, in order."""
        self.incident_runner.hand_over(self._for_incidents)
        self._for_incidents = []

    def _worth_raising(self, alert: Alert) -> bool:
        """Offline and silence alarms are for registered elevators, and for others that sent
        a status frame in the last `offline_heard_within_h`: not for an id that is no more
        than a retained `online` state (a car taken away long ago, a test device)."""
        if (
            alert.action != "fire"
            or not self.rules.is_liveness(alert.rule)
            or self.registry.registered(alert.elevator_id)
        ):
            return True
        heard = self.rules.last_status_at(alert.elevator_id)
        window_s = self.settings.offline_heard_within_h * 3600
        if heard is not None and (alert.at - heard).total_seconds() <= window_s:
            return True
        metrics.OFFLINE_NOT_ALARMED.inc()
        log.info("offline_not_alarmed", elevator_id=alert.elevator_id, rule=alert.rule)
        return False

    def _evict(self, now: datetime) -> None:
        """Forget elevators unheard for `evict_after_h`; count the tracked ids that are not in
        the registry (a growing number: spoofed or misconfigured devices)."""
        gone = self.rules.evict(now, self.settings.evict_after_h * 3600)
        if gone:
            self.pipeline.forget(gone)
            self._for_incidents.append(Forget(gone))
            metrics.ELEVATORS_EVICTED.inc(len(gone))
            log.info("elevators_evicted", count=len(gone))
        unknown = sum(not self.registry.registered(e) for e in self.rules.tracked())
        metrics.UNREGISTERED_ELEVATORS.set(unknown)

    def _tick(self) -> None:
        """Time-driven work, on the worker thread: held rule conditions (a trapped car may
        fall silent), the clocks of open incidents, rule reloads."""
        now = self.clock.now()
        if self._reload_rules.is_set():
            self._reload_rules.clear()
            self._swap_rules()
        # With frames still waiting, the rules may only run up to the newest one processed:
        # a car whose frames wait in the session is not silent.
        seen_up_to = now if self._caught_up else min(now, self._seen_up_to)
        if not self.session.connected:
            # Cut off from the broker we hear no car, and that says nothing about the cars:
            # no car is silent until a silence window after we are back.
            self.rules.resume(seen_up_to)
        self._raise(
            alert
            for alert in self.rules.tick(seen_up_to)
            if self._owns(alert.elevator_id) or alert.rule == SITE_RULE
        )
        if self.partition is not None:
            taken_over = self.partition.renew_if_due()
            for raw in taken_over:
                self.pipeline.process(raw)
            if taken_over:
                self._flush()
        self._hand_work()
        self.incident_runner.tick(now)
        if now >= self._evict_at:
            self._evict(now)
            self._evict_at = now + _EVICT_EVERY

    def _work(self) -> None:
        # Acknowledgements wait for the write, and the broker sends at most the receive window
        # unacknowledged: with a batch being written, one waiting and one being cut, a
        # quarter of the window each keeps it sending meanwhile.
        batch_size = min(self.settings.batch_size, max(1, self.settings.mqtt_receive_window // 4))
        interval = self.settings.flush_interval_s
        tick_every = self.settings.tick_interval_s
        next_tick = time.monotonic()
        oldest: float | None = None  # monotonic time of the oldest message not yet flushed
        while not self._stopping.is_set():
            if time.monotonic() >= next_tick:
                self._safe_tick()
                next_tick = time.monotonic() + tick_every
            flush_at = next_tick if oldest is None else min(next_tick, oldest + interval)
            messages = self.session.receive(max(0.0, flush_at - time.monotonic()))
            self._caught_up = not messages
            for raw in messages:
                if self._takes(raw):
                    oldest = oldest or time.monotonic()
                    self.pipeline.process(raw)
                    self._seen_up_to = raw.received_at
                if self.pipeline.pending >= batch_size:
                    self._flush()
                    oldest = None
            self._hand_work()
            self.pipeline.publish_counts()
            if oldest is None and self._incident_points:
                oldest = time.monotonic()
            if oldest is not None and time.monotonic() >= oldest + interval:
                self._flush()
                oldest = None
            self._hand_over()
        if self.pipeline.pending or self._incident_points:
            self._flush()
        self._hand_over(every=True)
        self._batches.put(_STOP)

    def _safe_tick(self) -> None:
        try:
            self._tick()
        except Exception:
            # Logged and counted; the next tick tries again (deadlines are stored).
            metrics.TICK_ERRORS.inc()
            log.exception("tick_failed")

    def _swap_rules(self) -> None:
        try:
            rules = load_rules(self.settings.rules_dir)
        except RuleError as exc:
            log.error(
                "rules_reload_refused",
                errors=[str(e) for e in exc.errors],
                detail="the previous rules stay in force",
            )
            return
        self.rules.replace_rules(rules)
        log.info("rules_reloaded", rules=len(rules.rules))

    def _refresh_registry(self) -> None:
        """Now and then, the registry as stored (another instance's API may have changed it):
        on a thread of its own, as the worker must never wait on the database."""
        while not self._stopping.wait(_REGISTRY_REFRESH_S):
            try:
                self.registry.load(self.store.all_elevators())
            except Exception:
                log.exception("registry_refresh_failed")  # the cache as it was holds

    def _flush(self) -> None:
        """Cut a batch and hand it to the writer thread."""
        metrics.QUEUE_DEPTH.set(self.session.backlog)
        points, rejected, acks = self.pipeline.take()
        # Acknowledged once the incidents' thread has done everything before this point
        # (their black box written), as well as the points.
        self._flushed = threading.Event()
        self._for_incidents.append(self._flushed)
        self._hand_work()
        while self._incident_points:
            points.append(self._incident_points.popleft())
        self._waiting.points.extend(points)
        self._waiting.rejected.extend(rejected)
        self._waiting.acks.extend(acks)
        # The profiles' fault sets as of this cut, saved once its batch is durable; batches
        # that wait together need only the newest.
        snapshot = self.profiles.faults.take_snapshot()
        if snapshot is not None:  # (an empty one, every fault cleared, replaces an older one)
            self._waiting_faults = snapshot
        self._hand_over()

    def _hand_over(self, every: bool = False) -> None:
        """Pass what was cut to the writer thread. While it is busy with a slow store, the
        batches wait here, the worker going on (a frame that traps someone is not held up by
        the store), and then go together, as one write: the slower the store, the larger the
        writes, so one that answers slowly still keeps up. Past `max_waiting_messages`, or
        with `every`, the worker waits for the writer (its clocks still ticking)."""
        while self._flushed is not None:  # (a tick below may cut and hand over itself)
            batch = (self._waiting, self._waiting_faults, self._flushed)
            block = every or len(self._waiting.acks) > self.settings.max_waiting_messages
            try:
                if block:
                    self._batches.put(batch, timeout=_RETRY_FLUSH_S)
                else:
                    self._batches.put_nowait(batch)
            except queue.Full:
                if not block:
                    return
                self._safe_tick()  # the writer is behind (slow store, full disk): clocks go on
                continue
            self._waiting, self._waiting_faults, self._flushed = Batch([], [], []), None, None

    def _write_batches(self) -> None:
        """The writer thread: each batch durable (rejections in the relational store, points
        in the time-series store or the spool), then acknowledged."""
        while (batch := self._batches.get()) is not _STOP:
            (points, rejected, acks), fault_sets, flushed = batch  # type: ignore[misc]
            while True:
                try:
                    self.deadletter.keep(rejected)
                    rejected = []  # kept: not again if what follows fails
                    self.writer.write(points)
                    if fault_sets is not None:
                        self.profiles.faults.save(fault_sets)
                    break
                except Exception:
                    # The database did not take the rejections, or neither the store nor
                    # the spool the points (disk full): hold the batch, unacknowledged, and
                    # try again; the broker keeps the rest meanwhile.
                    log.exception("flush_failed_retrying")
                    time.sleep(_RETRY_FLUSH_S)
            flushed.wait()
            try:
                self.session.ack(acks)
            except Exception:
                # Unacknowledged, the frames come again (broker or journal): stored twice
                # at worst, never lost; the writer goes on.
                log.exception("ack_failed")

    # -- HTTP ------------------------------------------------------------------------------
    def _start_http(self) -> None:
        s = self.settings
        context = Context(
            self.store, self.incidents, self.clock, self.health, self.live, self.registry.update,
            ZoneInfo(s.timezone), s.arrival_limit_s,
        )  # fmt: skip
        try:
            self._http, self._http_thread = serve_http(context, s, self.tokens)
        except StartError:
            self.stop()
            raise


def serve_http(
    context: Context, s: Settings, tokens: TokenBook
) -> tuple[uvicorn.Server, threading.Thread]:
    """The HTTP API and pages on a thread of their own, started; StartError if they can't."""
    app = create_app(
        context, tokens, public_docs=s.public_docs, https=s.public_base_url.startswith("https:")
    )
    config = uvicorn.Config(
        app,
        host=s.http_host,
        port=s.http_port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise StartError(
                f"HTTP server did not start on {s.http_host}:{s.http_port} (port in use?)"
            )
        time.sleep(0.02)
    return server, thread


def policy(s: Settings) -> Policy:
    return Policy(
        limits=Limits(
            arrival_s=s.arrival_limit_s, warning_s=s.arrival_warning_s, ack_s=s.ack_limit_s
        ),
        district_arrival_s=s.district_arrival_limits,
        district_clock_start=s.district_clock_start,
        alert_webhooks=tuple(s.alert_webhooks),
        level2_webhooks=tuple(s.level2_webhooks),
        regulator_webhooks=tuple(s.regulator_webhooks),
    )

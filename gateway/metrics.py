"""The gateway's own health, in Prometheus form (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.frames import KINDS, REASONS

FRAMES_IN = Counter("gateway_frames_received_total", "MQTT messages received", ["kind"])
FRAMES_ACCEPTED = Counter("gateway_frames_accepted_total", "Valid, new frames passed on", ["kind"])
for _kind in KINDS:  # at 0 from the start, not from the first frame
    FRAMES_IN.labels(_kind)
    FRAMES_ACCEPTED.labels(_kind)
FRAMES_REJECTED = Counter(
    "gateway_frames_rejected_total", "Messages rejected and dead-lettered", ["reason"]
)
for _reason in REASONS:
    FRAMES_REJECTED.labels(_reason)
# Labelled per elevator: only devices beyond the rate limit appear (few, and worth naming).
RATE_LIMITED = Counter(
    "gateway_rate_limited_frames_total",
    "Frames refused by the per-elevator rate limit, kept in the dead letter",
    ["elevator_id"],
)
DUPLICATES = Counter("gateway_frames_duplicate_total", "Frames already seen (QoS 1 redelivery)")
SEQ_GAPS = Counter("gateway_seq_gap_frames_total", "Frames missing according to seq gaps")
CLOCK_SKEW = Counter(
    "gateway_clock_skew_frames_total", "Frames whose device time is off by more than 5 minutes"
)
TSDB_WRITE_SECONDS = Histogram(
    "gateway_tsdb_write_seconds",
    "Time to write one batch to the time-series store",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TSDB_WRITE_ERRORS = Counter("gateway_tsdb_write_errors_total", "Failed time-series writes")
TSDB_REFUSED = Counter(
    "gateway_tsdb_refused_points_total",
    "Points the time-series store refused (4xx), each kept in the dead letter",
)
TSDB_POINTS = Counter("gateway_tsdb_points_written_total", "Points acknowledged by the store")
TSDB_UP = Gauge("gateway_tsdb_up", "1 while the time-series store takes writes")
SPOOL_DEPTH = Gauge("gateway_spool_points", "Points waiting in the disk spool")
SPOOL_BYTES = Gauge("gateway_spool_bytes", "Bytes in the disk spool")
SPOOL_AGE = Gauge("gateway_spool_oldest_age_seconds", "Age of the oldest spooled batch")
SPOOL_DROPPED = Counter(
    "gateway_spool_dropped_points_total", "Telemetry dropped because the spool was full"
)
ALERT_DELIVERY_SECONDS = Histogram(
    "gateway_alert_delivery_seconds",
    "From an alert falling due (a rule's hold passed, an incident reported) to the broker's "
    "acknowledgement of it on dispatch/alerts",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BROKER_UP = Gauge("gateway_broker_connected", "1 while the ingest MQTT session is connected")
QUEUE_DEPTH = Gauge("gateway_ingest_queue", "Messages received and not yet processed")
ELEVATORS_WITH_OPEN_INCIDENTS = Gauge(
    "gateway_elevators_with_open_incidents", "Elevators that have at least one open incident"
)
BREACHES = Counter("gateway_sla_breaches_total", "Rescue arrival limits passed without arrival")
CONSUMER_ERRORS = Counter(
    "gateway_consumer_errors_total", "Frames whose detection or incident handling failed"
)
TICK_ERRORS = Counter("gateway_tick_errors_total", "Ticks (rules, SLA clocks) that failed")
CLUSTER_HELD_DROPPED = Counter(
    "gateway_cluster_held_dropped_total",
    "Other members' frames pushed out of the takeover hold before two leases had passed",
)
WEBHOOK_DELIVERED = Counter(
    "gateway_webhook_delivered_total", "Webhook notifications the receiver took", ["endpoint"]
)
WEBHOOK_FAILURES = Counter(
    "gateway_webhook_failures_total",
    "Webhook attempts that failed (retried with backoff)",
    ["endpoint"],
)
WEBHOOK_DEAD = Counter(
    "gateway_webhook_dead_letters_total",
    "Webhook notifications given up (max attempts or max age), kept as dead letters",
    ["endpoint"],
)
WEBHOOK_FAILING_SINCE = Gauge(
    "gateway_webhook_failing_since_timestamp_seconds",
    "Since when an endpoint's deliveries fail (Unix time; 0 while it takes them)",
    ["endpoint"],
)
ALERTS_WAITING_FOR_STORE = Gauge(
    "gateway_alerts_waiting_for_store",
    "Alerts raised that wait for the relational store to take them (a database hiccup)",
)
OFFLINE_NOT_ALARMED = Counter(
    "gateway_offline_not_alarmed_total",
    "Offline or silence alarms not raised: elevator unregistered and not heard recently",
)
UNREGISTERED_ELEVATORS = Gauge(
    "gateway_unregistered_elevators", "Elevator ids tracked that are not in the registry"
)
ELEVATORS_EVICTED = Counter(
    "gateway_elevators_evicted_total", "Elevators forgotten after a long time unheard"
)

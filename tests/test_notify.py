"""Delivery per channel (issue 21): each webhook endpoint has its own queue, in order, with
capped backoff and a dead letter; the alarm on dispatch/alerts never waits for a webhook.

Webhook receivers are real HTTP servers on loopback; the store is SQLite and PostgreSQL; the
gateway test runs on the real Mosquitto.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from gateway.app import Gateway
from gateway.clock import FixedClock
from gateway.ingest import Publisher
from gateway.notify import Notifier, WebhookPolicy, endpoint_names, retry_delay
from gateway.store import OutboxMessage, Store
from tests.conftest import Broker, Device, Subscriber, free_port, status_frame, wait_for
from tests.services import StallingProxy

TRAPPED = {"moving": False, "door": "closed", "door_zone": False, "occupied": True, "floor": 7}
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Receiver:
    """A webhook endpoint that answers the first `failures` requests with 500, then 204."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                failed = len(receiver.bodies) <= receiver.failures
                self.send_response(500 if failed else 204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _metric(name: str, endpoint: str) -> float:
    return REGISTRY.get_sample_value(name, {"endpoint": endpoint}) or 0.0


def test_retry_delay_doubles_up_to_the_cap() -> None:
    delays = [retry_delay(n, 60).total_seconds() for n in (1, 2, 3, 5, 6, 1000)]
    assert delays == [2, 4, 8, 32, 60, 60]


def test_endpoints_are_named_by_role_and_host_never_by_their_secret_parts() -> None:
    names = endpoint_names(
        {
            "alert": ["https://a.example/x?token=1", "https://a.example/y?token=2"],
            "regulator": ["https://reg.example/services/T0/SECRET", "https://a.example/x?token=1"],
        }
    )
    assert names == {
        "https://a.example/x?token=1": "alert:a.example",
        "https://a.example/y?token=2": "alert:a.example#2",
        "https://reg.example/services/T0/SECRET": "regulator:reg.example",
    }


def _notifier(store: Store, broker: Broker, clock: FixedClock, url: str, **policy: Any) -> Notifier:
    publisher = Publisher(broker.url, "notify-test")  # not started: this test sends no MQTT
    policy = {"timeout_s": 5, "max_backoff_s": 8, "max_attempts": 100} | policy
    return Notifier(
        store, publisher, clock, webhooks={url: "alert:test"},
        webhook_policy=WebhookPolicy(**policy), poll_s=0.02,
    )  # fmt: skip


def test_a_failing_endpoint_is_retried_with_backoff_in_order_then_recovers(
    store: Store, broker: Broker
) -> None:
    hook = Receiver(failures=2)
    clock = FixedClock(START)
    store.enqueue([OutboxMessage("webhook", hook.url, b'{"n": %d}' % n) for n in range(3)], START)
    notifier = _notifier(store, broker, clock, hook.url)
    failures_before = _metric("gateway_webhook_failures_total", "alert:test")
    notifier.start()
    try:
        wait_for(lambda: len(hook.bodies) == 1)
        time.sleep(0.2)  # many polls: nothing more until the backoff has passed
        assert len(hook.bodies) == 1
        assert notifier.webhooks()["alert:test"]["failing_since"] == "2026-03-01T08:00:00Z"
        assert _metric("gateway_webhook_failing_since_timestamp_seconds", "alert:test") == (
            START.timestamp()
        )
        clock.advance(2)
        wait_for(lambda: len(hook.bodies) == 2)
        clock.advance(3.9)  # the second wait is 4 s
        time.sleep(0.2)
        assert len(hook.bodies) == 2
        clock.advance(0.1)
        wait_for(lambda: len(hook.bodies) == 5)
        # The failed one went first, then the others, in order: nothing overtook it.
        assert [json.loads(b)["n"] for b in hook.bodies] == [0, 0, 0, 1, 2]
        assert notifier.webhooks()["alert:test"] == {"failing_since": None, "dead_letters": 0}
        assert _metric("gateway_webhook_failures_total", "alert:test") - failures_before == 2
        assert _metric("gateway_webhook_failing_since_timestamp_seconds", "alert:test") == 0
        assert hook.url not in store.webhook_targets()
    finally:
        notifier.close()
        hook.close()


def test_a_notification_that_keeps_failing_is_given_up_and_the_queue_moves_on(
    store: Store, broker: Broker
) -> None:
    hook = Receiver(failures=3)
    clock = FixedClock(START)
    store.enqueue([OutboxMessage("webhook", hook.url, b'{"n": %d}' % n) for n in range(2)], START)
    # Far older than the maximum age: given up without an attempt.
    store.enqueue([OutboxMessage("webhook", hook.url, b'{"n": 2}')], START - timedelta(days=2))
    notifier = _notifier(store, broker, clock, hook.url, max_attempts=3, max_age_s=86_400)
    dead_before = _metric("gateway_webhook_dead_letters_total", "alert:test")
    notifier.start()
    try:
        wait_for(lambda: len(hook.bodies) == 1)
        clock.advance(2)
        wait_for(lambda: len(hook.bodies) == 2)
        clock.advance(4)  # the third failure gives the first notification up
        wait_for(lambda: len(hook.bodies) == 4)
        assert [json.loads(b)["n"] for b in hook.bodies] == [0, 0, 0, 1]
        wait_for(lambda: store.dead_webhooks().get(hook.url) == 2)
        assert _metric("gateway_webhook_dead_letters_total", "alert:test") - dead_before == 2
        assert notifier.webhooks()["alert:test"] == {"failing_since": None, "dead_letters": 2}
        assert hook.url not in store.webhook_targets()
    finally:
        notifier.close()
        hook.close()


@pytest.mark.timeout(120)
def test_alerts_go_out_while_every_webhook_endpoint_hangs(
    gateway_settings, device: Device, broker: Broker, prefix: str
) -> None:
    """Three alert endpoints and the regulator's never answer, with a 60 s timeout: each
    entrapment's alert and incident state are still on the broker within a few seconds (a
    "not blocked" bound, 10 s, far below one webhook timeout)."""
    hanging = [StallingProxy(0, hanging=True) for _ in range(4)]
    alerts = Subscriber(broker.url, "dispatch/alerts")
    states = Subscriber(broker.url, "dispatch/incidents/#")
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(
        tsdb_url="", tick_interval_s=0.02, webhook_timeout_s=60,
        alert_webhooks=[f"{h.url}/hook" for h in hanging[:3]],
        regulator_webhooks=[f"{hanging[3].url}/hook"],
    )  # fmt: skip

    def alert_of(eid: str) -> list[dict[str, Any]]:
        found = (json.loads(p) for _t, p in alerts.messages)
        return [a for a in found if a["elevator_id"] == eid and a["kind"] == "entrapment"]

    with Gateway(settings, clock) as gw:
        assert gw.session.wait_connected(10)
        for n in range(3):  # one after the other: each finds the endpoints already hanging
            eid = f"{prefix}-{n}"
            device.publish(f"elevators/{eid}/status", status_frame(eid, 0, **TRAPPED))
            wait_for(lambda eid=eid: gw.incidents.last_frame(eid))
            clock.advance(21)
            [alert] = wait_for(lambda eid=eid: alert_of(eid), timeout=10)
            topic = f"dispatch/incidents/{alert['incident_id']}"
            wait_for(lambda topic=topic: any(t == topic for t, _p in states.messages), timeout=10)
            # Each alert endpoint has been sent the first alert and is hanging on it.
            wait_for(lambda: all(h.held for h in hanging[:3]), timeout=10)
        assert hanging[3].held == 0  # the regulator hears of breaches only
        health = gw.health()["webhooks"]
        assert set(health) == {"alert:127.0.0.1", "alert:127.0.0.1#2", "alert:127.0.0.1#3",
                               "regulator:127.0.0.1"}  # fmt: skip
    for h in hanging:
        h.close()
    alerts.close()
    states.close()


def test_what_one_drain_publishes_leaves_the_outbox_in_one_commit(
    store: Store, broker: Broker, prefix: str
) -> None:
    """After a database pause the MQTT channel has a pile to deliver (every alert raised
    meanwhile, and their states): each published message used to be marked with a commit of
    its own, and the next alert waited behind them all. Now the lot goes in one."""
    topic = f"dispatch/test/{prefix}"
    sub = Subscriber(broker.url, topic)
    publisher = Publisher(broker.url, f"notify-{prefix}")
    publisher.start()
    notifier = Notifier(store, publisher, FixedClock(START))
    store.enqueue([OutboxMessage("mqtt", topic, b"%d" % n) for n in range(20)], START)
    commits: list[object] = []

    def count(conn: object) -> None:
        commits.append(conn)

    event.listen(store.engine, "commit", count)
    try:
        wait_for(lambda: publisher.connected)
        assert notifier.drain_once() == 20
    finally:
        event.remove(store.engine, "commit", count)
    assert len(commits) == 1
    wait_for(lambda: len(sub.messages) == 20)
    assert [int(p) for _t, p in sub.messages] == list(range(20))  # in order
    with store.claim_outbox(START) as claim:
        assert [m for m in claim.messages if m.target == topic] == []
    publisher.close()
    sub.close()

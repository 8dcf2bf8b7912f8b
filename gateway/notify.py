"""Dispatch output (contract §2) and webhooks, delivered from the outbox.

Incident changes write their messages into the outbox in the same transaction as the change;
`Notifier` delivers them, each channel on a thread of its own so no channel waits for
another: MQTT messages in order, deleted once the broker has acknowledged them; each webhook
endpoint its own queue, in order, deleted once the receiver answered 2xx. A failing endpoint
is retried with capped exponential backoff, its queue waiting behind the failed message (so
an incident's notifications never overtake each other); one that keeps failing past
`max_attempts` or `max_age` is given up and kept as a dead letter. A crash can repeat a
message (each alert carries an `id` to dedup on), never lose one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from gateway import metrics
from gateway.clock import Clock
from gateway.incidents.model import Incident, iso_utc, to_json
from gateway.ingest import Publisher
from gateway.store import OutboxClaim, OutboxMessage, Store

log = structlog.get_logger(__name__)

ALERTS_TOPIC = "dispatch/alerts"
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"


def incident_topic(incident_id: str) -> str:
    return f"dispatch/incidents/{incident_id}"


def state_messages(incident: Incident) -> list[OutboxMessage]:
    """The retained state; once closed, the final state followed by an empty retained
    message that removes it from the broker."""
    topic = incident_topic(incident.id)
    body = json.dumps(to_json(incident)).encode()
    messages = [OutboxMessage("mqtt", topic, body, retain=True)]
    if not incident.is_open:
        messages.append(OutboxMessage("mqtt", topic, b"", retain=True))
    return messages


def alert_payload(
    incident: Incident, alert_type: str, severity: str, at: datetime, level: int = 1
) -> dict[str, Any]:
    return {
        "incident_id": incident.id,
        "elevator_id": incident.elevator_id,
        "kind": incident.kind,
        "severity": severity,
        "rule": incident.rule,
        "at": iso_utc(at),
        "deadline_at": iso_utc(incident.deadline_at),
        # additions
        "id": f"{incident.id}:{alert_type}:{level}",
        "type": alert_type,
        "level": level,
        "site": incident.site,
        "source": incident.source,
        "drill": incident.drill,
    }


def site_alert_payload(
    site: str, action: str, severity: str, at: datetime, detail: str, group: str | None
) -> dict[str, Any]:
    """A site-level alarm: no incident of its own; each car's incident names the group."""
    alert_type = "site_power_cut" if action == "fire" else "site_power_restored"
    return {
        "incident_id": None,
        "elevator_id": None,
        "kind": "power_cut",
        "severity": severity,
        "rule": "site_power_cut",
        "at": iso_utc(at),
        "deadline_at": None,
        "id": f"{group}:{alert_type}:{iso_utc(at)}",
        "type": alert_type,
        "level": 1,
        "site": site,
        "group": group,
        "detail": detail,
    }


def alert_messages(payload: dict[str, Any], webhooks: Sequence[str] = ()) -> list[OutboxMessage]:
    body = json.dumps(payload).encode()
    return [OutboxMessage("mqtt", ALERTS_TOPIC, body)] + [
        OutboxMessage("webhook", url, body) for url in webhooks
    ]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 of `{timestamp}.{body}` (as Stripe signs): the time is covered, so a
    receiver that refuses old timestamps cannot be fed a captured request again (see
    deploy/verify_webhook.py)."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    timeout_s: float = 10.0
    max_backoff_s: float = 300.0
    max_attempts: int = 100
    max_age_s: float = 86_400.0


def endpoint_names(by_role: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{url: name} for each configured endpoint, named by role and host ("regulator:host";
    "#2", "#3" ... for more of a role on one host): URLs often carry a token in their path
    or query, and the names are shown without authentication (health, metrics)."""
    names: dict[str, str] = {}
    for role, urls in by_role.items():
        for url in urls:
            if url not in names:
                name = f"{role}:{urlsplit(url).hostname}"
                taken = sum(n == name or n.startswith(name + "#") for n in names.values())
                names[url] = f"{name}#{taken + 1}" if taken else name
    return names


def retry_delay(attempts: int, max_backoff_s: float) -> timedelta:
    """The wait after the `attempts`-th failure: 2, 4, 8 ... seconds, capped."""
    return timedelta(seconds=min(2.0 ** min(attempts, 32), max_backoff_s))


def expired(message: OutboxMessage, now: datetime, policy: WebhookPolicy) -> bool:
    """Whether a notification is too old to be worth another attempt."""
    assert message.created_at is not None
    return (now - message.created_at).total_seconds() >= policy.max_age_s


class Notifier:
    """Delivers the outbox: MQTT on one thread, each webhook endpoint on one of its own."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        clock: Clock,
        webhook_secret: str = "",
        webhooks: Mapping[str, str] | None = None,  # {url: name}, see `endpoint_names`
        webhook_policy: WebhookPolicy = WebhookPolicy(),
        poll_s: float = 0.5,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._poll = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        # Configured endpoints, and any that still has notifications from an earlier setup.
        names = dict(webhooks or {})
        names |= endpoint_names({"unconfigured": sorted(store.webhook_targets() - names.keys())})
        self._webhooks = [
            _Endpoint(url, name, store, clock, webhook_secret, webhook_policy, self._stop, poll_s)
            for url, name in names.items()
        ]

    def start(self) -> None:
        self._thread.start()
        for endpoint in self._webhooks:
            endpoint.start()

    def wake(self) -> None:
        """Something was added to the outbox."""
        self._wake.set()
        for endpoint in self._webhooks:
            endpoint.wake.set()

    def close(self) -> None:
        self.drain_once()  # deliver what is due before stopping; the rest waits in the outbox
        self._stop.set()
        self.wake()
        self._thread.join(timeout=10)
        for endpoint in self._webhooks:
            endpoint.close()

    def webhooks(self) -> dict[str, dict[str, object]]:
        """Each endpoint's state by name, for /api/health: failing since when, and how many
        notifications were given up."""
        dead = self._store.dead_webhooks()
        return {
            e.name: {
                "failing_since": iso_utc(e.failing_since) if e.failing_since else None,
                "dead_letters": dead.get(e.url, 0),
            }
            for e in self._webhooks
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll)
            self._wake.clear()
            try:
                self.drain_once()
            except Exception:
                log.exception("notify_failed")

    def drain_once(self) -> int:
        """Publish the MQTT messages that are due; returns how many were delivered."""
        # Gateways sharing a store share the outbox: one of them delivers at a time.
        with self._store.claim_outbox(self._clock.now()) as claim:
            # In order: what follows a message that did not go out stays in the outbox with
            # it, with no backoff, or a later state would overtake it (sent again next time;
            # alert ids dedup).
            sent = self._mqtt(claim.messages)
            acknowledged_at = self._clock.now()
            if sent:
                claim.done(*(m.id for m in claim.messages[:sent] if m.id is not None))
            for message in claim.messages[:sent]:
                if message.target == ALERTS_TOPIC and message.created_at is not None:
                    late = (acknowledged_at - message.created_at).total_seconds()
                    metrics.ALERT_DELIVERY_SECONDS.observe(max(0.0, late))
        return sent

    def _mqtt(self, messages: list[OutboxMessage]) -> int:
        if not messages or not self._publisher.connected:
            return 0
        return self._publisher.publish_in_order(
            [(m.target, m.payload, m.retain) for m in messages], wait_s=5
        )


class _Endpoint:
    """One webhook endpoint's queue, delivered in order on a thread of its own."""

    def __init__(
        self,
        url: str,
        name: str,
        store: Store,
        clock: Clock,
        secret: str,
        policy: WebhookPolicy,
        stop: threading.Event,
        poll_s: float,
    ) -> None:
        self.url = url
        self.name = name
        self.wake = threading.Event()
        self.failing_since: datetime | None = None
        self._store = store
        self._clock = clock
        self._secret = secret
        self._policy = policy
        self._stop = stop
        self._poll = poll_s
        self._http = httpx.Client(timeout=policy.timeout_s)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        for metric in (metrics.WEBHOOK_DELIVERED, metrics.WEBHOOK_FAILURES, metrics.WEBHOOK_DEAD):
            metric.labels(self.name)  # at 0 from the start
        metrics.WEBHOOK_FAILING_SINCE.labels(self.name).set(0)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        # A post in flight may hang up to the timeout: not waited for (the message stays in
        # the outbox and is posted again, its id deduplicates).
        self._thread.join(timeout=1)
        if not self._thread.is_alive():
            self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.deliver_once()
            except Exception:
                log.exception("webhook_delivery_failed", endpoint=self.name)
                wait = self._poll
            if wait > 0:
                self.wake.wait(min(wait, self._poll))
                self.wake.clear()

    def deliver_once(self) -> float:
        """Deal with the head of the queue; returns how long (s) to wait before the next."""
        with self._store.claim_webhook(self.url) as claim:
            if not claim.messages:
                return self._poll
            [message] = claim.messages
            now = self._clock.now()
            assert message.id is not None and message.next_attempt_at is not None
            if message.next_attempt_at > now:
                return (message.next_attempt_at - now).total_seconds()
            if expired(message, now, self._policy):
                self._give_up(claim, message, "max_age")
                return 0
            error = self._post(message)
            now = self._clock.now()
            if error is None:
                claim.done(message.id)
                metrics.WEBHOOK_DELIVERED.labels(self.name).inc()
                if self.failing_since is not None:
                    log.info("webhook_recovered", endpoint=self.name)
                self.failing_since = None
                metrics.WEBHOOK_FAILING_SINCE.labels(self.name).set(0)
                return 0
            metrics.WEBHOOK_FAILURES.labels(self.name).inc()
            if self.failing_since is None:
                self.failing_since = now
                metrics.WEBHOOK_FAILING_SINCE.labels(self.name).set(now.timestamp())
            attempts = message.attempts + 1
            log.warning("webhook_failed", endpoint=self.name, error=error, attempt=attempts)
            if attempts >= self._policy.max_attempts:
                self._give_up(claim, message, "max_attempts")
                return 0
            delay = retry_delay(attempts, self._policy.max_backoff_s)
            claim.retry(message.id, attempts, now + delay)
            return delay.total_seconds()

    def _give_up(self, claim: OutboxClaim, message: OutboxMessage, why: str) -> None:
        assert message.id is not None
        claim.give_up(message.id)
        metrics.WEBHOOK_DEAD.labels(self.name).inc()
        log.error(
            "webhook_given_up", endpoint=self.name, why=why, attempts=message.attempts,
            payload=message.payload.decode(errors="replace")[:500],
        )  # fmt: skip

    def _post(self, message: OutboxMessage) -> str | None:
        """None once the receiver took it, else what went wrong."""
        headers = {"Content-Type": "application/json"}
        if self._secret:
            # Signed at each attempt: a retry carries its own time, not the first one's.
            timestamp = int(self._clock.now().timestamp())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, message.payload)
        try:
            response = self._http.post(message.target, content=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return None if response.is_success else f"HTTP {response.status_code}"

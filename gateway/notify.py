"""Dispatch output (contract §2) and webhooks, delivered from the outbox.

Incident changes write their messages into the outbox in the same transaction as the change;
`Notifier` drains it in order: MQTT messages are deleted once the broker has acknowledged
them, webhooks once the receiver answered 2xx (retried with backoff until then). A crash can
repeat a message (each alert carries an `id` to dedup on), never lose one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from gateway import metrics
from gateway.clock import Clock
from gateway.incidents.model import Incident, iso_utc, to_json
from gateway.ingest import Publisher
from gateway.store import OutboxMessage, Store

log = structlog.get_logger(__name__)

ALERTS_TOPIC = "dispatch/alerts"
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
_MAX_BACKOFF = timedelta(minutes=5)


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


class Notifier:
    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        clock: Clock,
        webhook_secret: str = "",
        poll_s: float = 0.5,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._secret = webhook_secret
        self._poll = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=10)
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something was added to the outbox."""
        self._wake.set()

    def close(self) -> None:
        self.drain_once()  # deliver what is due before stopping; the rest waits in the outbox
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll)
            self._wake.clear()
            try:
                self.drain_once()
            except Exception:
                log.exception("notify_failed")

    def drain_once(self) -> int:
        """Deliver what is due; returns how many were delivered."""
        delivered = 0
        # Gateways sharing a store share the outbox: one of them delivers at a time.
        with self._store.claim_outbox(self._clock.now()) as claim:
            # MQTT first (a slow webhook must not hold dispatch up), and in order: what follows
            # a message that did not go out stays in the outbox with it, with no backoff, or a
            # later state would overtake it (sent again next time; alert ids dedup).
            mqtt = [m for m in claim.messages if m.channel == "mqtt"]
            webhooks = [m for m in claim.messages if m.channel != "mqtt"]
            sent = self._mqtt(mqtt)
            acknowledged_at = self._clock.now()
            for message in mqtt[:sent]:
                assert message.id is not None
                claim.done(message.id)
                if message.target == ALERTS_TOPIC and message.created_at is not None:
                    late = (acknowledged_at - message.created_at).total_seconds()
                    metrics.ALERT_DELIVERY_SECONDS.observe(max(0.0, late))
            delivered += sent
            for message in webhooks:
                assert message.id is not None
                if self._webhook(message):
                    claim.done(message.id)
                    delivered += 1
                    continue
                attempts = message.attempts + 1
                delay = min(timedelta(seconds=2**attempts), _MAX_BACKOFF)
                claim.retry(message.id, attempts, self._clock.now() + delay)
        return delivered

    def _mqtt(self, messages: list[OutboxMessage]) -> int:
        if not messages or not self._publisher.connected:
            return 0
        return self._publisher.publish_in_order(
            [(m.target, m.payload, m.retain) for m in messages], wait_s=5
        )

    def _webhook(self, message: OutboxMessage) -> bool:
        headers = {"Content-Type": "application/json"}
        if self._secret:
            # Signed at each attempt: a retry carries its own time, not the first one's.
            timestamp = int(self._clock.now().timestamp())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, message.payload)
        try:
            response = self._http.post(message.target, content=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            log.warning(
                "webhook_failed",
                host=urlsplit(message.target).hostname,
                error=str(exc),
                attempt=message.attempts + 1,
            )
            return False
        if response.is_success:
            return True
        log.warning(
            "webhook_refused",
            host=urlsplit(message.target).hostname,
            status=response.status_code,
            attempt=message.attempts + 1,
        )
        return False

"""Several gateways on one broker: which gateway processes which elevator.

Mosquitto hands a shared subscription's messages out round-robin, so one elevator's frames
would be spread over every gateway and its state (the dedup window, held rule conditions, the
black box) split between them. So the gateways of a partition group each subscribe to every
frame and process only the elevators they own, acknowledging the rest untouched: the broker
sends each frame once per gateway, the price of keeping an elevator on one gateway.

Ownership is rendezvous hashing over the live members, who renew leases in the shared store.
When a member dies its lease runs out and its elevators spread over the others (the rest stay
where they are); each replays the frames of its new elevators it received and held in the
meantime, so the frames the dead member never processed are not lost.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog

from gateway import metrics
from gateway.clock import Clock
from gateway.ingest import AckToken, RawMessage
from gateway.store import Store

log = structlog.get_logger(__name__)

# Replayed messages were acknowledged when held: a QoS 0 token is never acknowledged again.
_NO_ACK = AckToken(0, 0)


def _weight(member: str, elevator_id: str) -> int:
    digest = hashlib.blake2b(f"{member}/{elevator_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(members: tuple[str, ...], elevator_id: str) -> str:
    """The member an elevator belongs to; stable while the members are."""
    return max(members, key=lambda m: _weight(m, elevator_id))


class Partition:
    """This gateway's share of a partition group's elevators. `owns` and `hold` run on the
    MQTT network thread, `renew` on the worker: the lock keeps a membership change atomic."""

    def __init__(
        self,
        store: Store,
        group: str,
        member_id: str,
        clock: Clock,
        lease_s: float,
        max_held: int = 200_000,
    ) -> None:
        self._store = store
        self._group = group
        self._member = member_id
        self._clock = clock
        self._lease = timedelta(seconds=lease_s)
        self._renew_every = self._lease / 3
        self._renew_at = datetime.min.replace(tzinfo=UTC)  # one clock for leases and renewals
        self._lock = threading.Lock()
        self._members: tuple[str, ...] = (member_id,)
        self._owns: dict[str, bool] = {}
        # Other members' recent frames: what a takeover replays. Twice a lease covers the
        # time from a member's last renewal to the others noticing its lease is gone. Bounded
        # in size too: a frame pushed out younger than that is one a takeover could miss, so
        # it is counted and logged (size `max_held` for the group's rate times two leases).
        self._held: deque[tuple[str, RawMessage]] = deque(maxlen=max_held)
        self._dropped_logged_at = float("-inf")

    def owns(self, elevator_id: str) -> bool:
        owned = self._owns.get(elevator_id)
        if owned is None:
            with self._lock:
                owned = self._owner_now(elevator_id)
        return owned

    def _owner_now(self, elevator_id: str) -> bool:
        owned = self._owns[elevator_id] = owner(self._members, elevator_id) == self._member
        return owned

    def take_or_hold(self, elevator_id: str, raw: RawMessage) -> bool:
        """True if this member owns the elevator (process the frame); otherwise keep the
        frame (its owner acknowledges it) in case this member takes over. One lock for both,
        so a membership change cannot fall between the decision and the keeping."""
        with self._lock:
            owned = self._owns.get(elevator_id)
            if owned is None:
                owned = self._owner_now(elevator_id)
            if not owned:
                if len(self._held) == self._held.maxlen:
                    self._dropped(self._held[0][1])
                self._held.append((elevator_id, raw))
            return owned

    def _dropped(self, raw: RawMessage) -> None:
        metrics.CLUSTER_HELD_DROPPED.inc()
        if time.monotonic() - self._dropped_logged_at >= 60:  # once a minute, not per frame
            self._dropped_logged_at = time.monotonic()
            log.warning(
                "cluster_held_frame_dropped",
                held=len(self._held),
                oldest_received_at=raw.received_at.isoformat(),
                detail="another member's frames exceed cluster_max_held: raise it, or a "
                "takeover in the next two leases may miss frames",
            )

    def renew(self) -> list[RawMessage]:
        """Renew the lease now; returns held frames of elevators this member has just taken
        over, oldest first, to process as if they had just arrived."""
        now = self._clock.now()
        live = tuple(self._store.renew_member(self._group, self._member, now + self._lease, now))
        self._renew_at = now + self._renew_every
        horizon = now - 2 * self._lease
        with self._lock:
            while self._held and self._held[0][1].received_at < horizon:
                self._held.popleft()
            if live == self._members:
                return []
            log.info("partition_members_changed", group=self._group, members=live)
            self._members, self._owns = live, {}
            decided = [(eid, raw, self._owner_now(eid)) for eid, raw in self._held]
            taken = [raw for _eid, raw, owned in decided if owned]
            kept = ((eid, raw) for eid, raw, owned in decided if not owned)
            self._held = deque(kept, self._held.maxlen)
        return [replace(raw, ack=_NO_ACK) for raw in taken]

    def renew_if_due(self) -> list[RawMessage]:
        return self.renew() if self._clock.now() >= self._renew_at else []

    def leave(self) -> None:
        self._store.leave(self._member)

"""Per-client limits at the edges a city deployment exposes (failed authentications, the
public elevator page).

A client is known by a keyed hash of its address (the key is random per process), so limits
and abuse logs can tell clients apart while no address is kept in memory or written anywhere.
Behind a reverse proxy on 127.0.0.1, uvicorn takes the address from `X-Forwarded-For`.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from datetime import datetime
from typing import Final

from fastapi import Request

from gateway.ratelimit import Decision, RateLimiter

_KEY: Final = secrets.token_bytes(32)  # per process: hashes correlate within one run only


def client_key(request: Request) -> str:
    """The request's client, as a keyed hash of its address (16 hex digits)."""
    host = request.client.host if request.client else "unknown"
    return hashlib.blake2b(host.encode(), key=_KEY, digest_size=8).hexdigest()


class ClientLimiter:
    """A token bucket per client: `burst` at once, refilled at `per_minute`; thread-safe
    (the HTTP server runs sync routes on a pool), times from the gateway's clock."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self._limiter = RateLimiter(rate=per_minute / 60, burst=burst)
        self._lock = threading.Lock()

    def take(self, client: str, now: datetime) -> Decision:
        with self._lock:
            return self._limiter.check(client, now.timestamp())

    def retry_after_s(self, client: str, now: datetime) -> int:
        """Whole seconds until `client` may go on (0: now), without taking anything."""
        with self._lock:
            return math.ceil(self._limiter.wait_s(client, now.timestamp()))

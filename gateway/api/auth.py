"""Bearer tokens with one role each. Tokens are kept only as SHA-256 digests and compared in
constant time; logs and the audit trail see a short token id, never the token.

The dispatch console's pages carry the same token in an HttpOnly, SameSite=Strict cookie
instead of a header, so page scripts never hold it. A request without an `Authorization`
header is identified by that cookie; a state-changing one must also carry `CSRF_HEADER`,
which a cross-site form cannot send and a cross-site script cannot send without a CORS
preflight this server never grants.

Failed authentications (a wrong sign-in, a wrong bearer token, a console cookie that no
longer opens anything) are limited per client: `FAILURES_BURST` at once, then
`FAILURES_PER_MINUTE`; past that, every request of that client that needs a token is answered
429 with `Retry-After`, the right token included, so guessing gains nothing by going on."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import structlog
from fastapi import HTTPException, Request

from gateway.api.clients import ClientLimiter, client_key

log = structlog.get_logger(__name__)

ROLE_DISPATCHER = "dispatcher"
ROLE_REGULATOR = "regulator"
ROLE_ADMIN = "admin"
ANY_ROLE = (ROLE_DISPATCHER, ROLE_REGULATOR, ROLE_ADMIN)
TOKEN_COOKIE = "gateway_token"
CSRF_HEADER = "x-gateway-console"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAILURES_BURST: Final = 10
FAILURES_PER_MINUTE: Final = 10


@dataclass(frozen=True, slots=True)
class Caller:
    role: str
    token_id: str

    @property
    def name(self) -> str:
        return f"{self.role}:{self.token_id}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenBook:
    def __init__(self, tokens: dict[str, str]) -> None:
        """`tokens` maps token -> role; only digests are kept."""
        self.replace(tokens)

    def replace(self, tokens: dict[str, str]) -> None:
        """Rotate: from now on exactly `tokens` are valid (one assignment, so a request in
        flight sees the old book or the new one, never a mix)."""
        self._entries = [(_digest(token), role) for token, role in tokens.items()]

    def identify(self, token: str) -> Caller | None:
        presented = _digest(token)
        found: Caller | None = None
        for digest, role in self._entries:  # no early exit: the time does not tell which
            if hmac.compare_digest(digest, presented):
                found = Caller(role, presented.hex()[:8])
        return found


class TooManyFailures(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed sign-ins from this client; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class FailureGuard:
    """The per-client limit on failed authentications."""

    def __init__(self) -> None:
        self._limiter = ClientLimiter(FAILURES_PER_MINUTE, FAILURES_BURST)

    def check(self, client: str, now: datetime) -> None:
        """TooManyFailures while `client` has used up its failures."""
        wait = self._limiter.retry_after_s(client, now)
        if wait > 0:
            raise TooManyFailures(wait)

    def failed(self, client: str, now: datetime) -> None:
        if self._limiter.take(client, now).first_refusal:
            log.warning("authentication_failures_limited", client_hash=client)


def guarded_identify(request: Request) -> Caller | None:
    """`identify`, refused (TooManyFailures) for a client past its failures; a failure is a
    token presented (header or cookie) that opens nothing. A request without one guesses
    nothing and is not counted."""
    guard: FailureGuard = request.app.state.auth_failures
    client, now = client_key(request), request.app.state.context.clock.now()
    guard.check(client, now)
    caller = identify(request)
    if caller is None and ("authorization" in request.headers or request.cookies.get(TOKEN_COOKIE)):
        guard.failed(client, now)
    return caller


def identify(request: Request) -> Caller | None:
    """The caller of a request: by its bearer token or, without an `Authorization` header,
    by the console's cookie (plus `CSRF_HEADER` on state-changing methods)."""
    book: TokenBook = request.app.state.tokens
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        return book.identify(token.strip()) if scheme.lower() == "bearer" else None
    token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        return None
    if request.method not in _SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        return None
    return book.identify(token)


def require(*roles: str) -> Callable[[Request], Caller]:
    """A dependency that admits callers holding one of `roles` (401 without a valid token,
    403 with a token of another role)."""

    def dependency(request: Request) -> Caller:
        try:
            caller = guarded_identify(request)
        except TooManyFailures as exc:
            raise HTTPException(
                429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from None
        if caller is None:
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role} may not do this")
        return caller

    return dependency

"""Bearer tokens with one role each. Tokens are kept only as SHA-256 digests and compared in
constant time; logs and the audit trail see a short token id, never the token.

The dispatch console's pages carry the same token in an HttpOnly, SameSite=Strict cookie
instead of a header, so page scripts never hold it. A request without an `Authorization`
header is identified by that cookie; a state-changing one must also carry `CSRF_HEADER`,
which a cross-site form cannot send and a cross-site script cannot send without a CORS
preflight this server never grants."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

ROLE_DISPATCHER = "dispatcher"
ROLE_REGULATOR = "regulator"
ROLE_ADMIN = "admin"
ANY_ROLE = (ROLE_DISPATCHER, ROLE_REGULATOR, ROLE_ADMIN)
TOKEN_COOKIE = "gateway_token"
CSRF_HEADER = "x-gateway-console"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
        self._entries = [(_digest(token), role) for token, role in tokens.items()]

    def identify(self, token: str) -> Caller | None:
        presented = _digest(token)
        found: Caller | None = None
        for digest, role in self._entries:  # no early exit: the time does not tell which
            if hmac.compare_digest(digest, presented):
                found = Caller(role, presented.hex()[:8])
        return found


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
        caller = identify(request)
        if caller is None:
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role} may not do this")
        return caller

    return dependency

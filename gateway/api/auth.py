"""Bearer tokens with one role each. Tokens are kept only as SHA-256 digests and compared in
constant time; logs and the audit trail see a short token id, never the token."""

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


def require(*roles: str) -> Callable[[Request], Caller]:
    """A dependency that admits callers holding one of `roles` (401 without a valid token,
    403 with a token of another role)."""

    def dependency(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        caller = (
            request.app.state.tokens.identify(token.strip()) if scheme.lower() == "bearer" else None
        )
        if caller is None:
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role} may not do this")
        return caller

    return dependency

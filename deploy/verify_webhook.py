"""How a webhook receiver checks a gateway request (docs/security.md). Standard library only:
copy it into the receiver. Also dedup on the alert's `id`, as a retry may repeat one."""

import hashlib
import hmac
import time

TOLERANCE_S = 300  # older or newer than this: refused (a captured request replayed later)


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """True if `body` is the gateway's, unchanged, and signed within TOLERANCE_S of `now`.
    `headers` as received (names in any case); `body` the raw bytes, before any JSON parse."""
    lower = {name.lower(): value for name, value in headers.items()}
    timestamp = lower.get("x-gateway-timestamp", "")
    signature = lower.get("x-gateway-signature", "")
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_S:
        return False
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)

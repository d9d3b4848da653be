"""Signed webhooks, both ways: casework signs what it sends to providers, and providers
sign their answers to casework's callback, with the same scheme.

    X-Casework-Timestamp: <unix seconds>
    X-Casework-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is signed too, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Casework-Timestamp"
SIGNATURE_HEADER = "X-Casework-Signature"
DELIVERY_HEADER = "X-Casework-Delivery"  # the idempotency key: receivers de-duplicate on it
PROVIDER_HEADER = "X-Casework-Provider"
MAX_SKEW_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, given: str, now: float) -> str | None:
    """None if the signature is good and fresh, else why not."""
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return "the timestamp is not a number"
    if age > MAX_SKEW_SECONDS:
        return f"the timestamp is {int(age)} s away from now (at most {MAX_SKEW_SECONDS} s)"
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        return "the signature does not match"
    return None

"""Signatures on outbound webhooks: ``Hub-Signature: t=<unix>,v1=<hex>``.

``v1`` is the hex HMAC-SHA256, keyed with the subscription's secret, of ``"<t>.<body>"`` (the
raw request body). Receivers recompute it, compare in constant time, and reject timestamps
older than a few minutes (replays). ``verify`` below is the whole recipe; it needs only the
standard library, so receivers can copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["sign", "signature_header", "verify"]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """True if ``header`` (the Hub-Signature value) signs ``body`` and is at most ``tolerance`` s old."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        age = abs((time.time() if now is None else now) - timestamp)
    except (ValueError, KeyError, OverflowError):  # OverflowError: a t beyond the float range
        return False
    if age > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode("utf-8", "replace"))

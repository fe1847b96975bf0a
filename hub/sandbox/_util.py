"""Small helpers shared by the sandbox fakes: masking for logs, timestamps, ids, SMS segments.

Log lines must never carry a full phone number or e-mail address: ``mask_address`` keeps the
last two digits of a number and the first character of an e-mail's local part.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = [
    "mask_address",
    "new_sid",
    "rfc2822",
    "rfc3339",
    "sms_segments",
    "utcnow",
]

_PHONE_LIKE = re.compile(r"^(?:[a-z]+:)?\+?[0-9 ()./-]+$")


def mask_address(value: str | None) -> str:
    """Mask a phone number, e-mail address or push token for logging."""
    if not value:
        return "-"
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if _PHONE_LIKE.match(value):
        digits = [c for c in value if c.isdigit()]
        return "***" + "".join(digits[-2:])
    # Tokens, topics and other opaque identifiers: keep a short prefix only.
    return value[:4] + "***"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``"""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc2822(moment: datetime) -> str:
    """``Wed, 01 May 2024 12:00:00 +0000`` (the format of Twilio's ``date_*`` fields)."""
    return format_datetime(moment.astimezone(UTC))


def new_sid(prefix: str) -> str:
    """A Twilio-style resource SID: two-letter prefix and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """Number of SMS segments ``text`` needs (GSM-7: 160/153 septets, else UCS-2: 70/67 units)."""
    if not text:
        return 1
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in text):
        units = sum(2 if c in _GSM7_EXTENSION else 1 for c in text)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)

"""The providers' wire formats the fakes write: timestamps and Twilio-style resource ids."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = ["new_sid", "rfc2822", "rfc3339", "utcnow"]


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

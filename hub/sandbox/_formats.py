"""Wire formats the fakes write: timestamps, Twilio-style resource ids, the sandbox's own errors."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

__all__ = ["json_error", "new_sid", "rfc2822", "rfc3339", "utcnow"]


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


def json_error(status: int, message: str) -> web.Response:
    """An error from the sandbox's own routes (not a provider's API): ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)

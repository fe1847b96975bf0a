"""``since``: the lower bound of a listing by status, given as an ISO 8601 time with its offset.

The API (``GET /v1/messages?status=&since=``) and the CLI (``hub messages --since``) read it the
same way: no value is the beginning of time, a time without a UTC offset is refused rather than
guessed (the server's zone is not the caller's).
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["InvalidSince", "since_ms"]


class InvalidSince(ValueError):
    """A ``since`` that is not a time or has no offset; ``problem`` is the short note for the field."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.message = message
        self.problem = problem


def since_ms(raw: str | None) -> int:
    """Milliseconds since the epoch of ``raw``; 0 when it is empty or None."""
    if not raw:
        return 0
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as e:
        raise InvalidSince("since must be an ISO 8601 time", "not a time") from e
    if when.tzinfo is None:
        raise InvalidSince("since needs a UTC offset, e.g. 2026-11-24T08:00:00Z", "no offset")
    return int(when.timestamp() * 1000)

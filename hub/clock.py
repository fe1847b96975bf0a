"""The time as the hub writes it into its records: UTC, ISO 8601, milliseconds (``now_iso``).

A leaf module (it imports nothing from the product), so every layer, the customer store in
``preferences`` included, stamps records the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["explicit_stamp", "now_iso"]


def now_iso() -> str:
    """Now, e.g. ``2026-11-24T08:00:00.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def explicit_stamp(now: str) -> str:
    """``contact_at`` for contacts written on purpose (``PUT``, an import, an erasure): ``now``
    with a mark that sorts after an event received in the same millisecond (events store their
    bare receipt time; APPLY_EVENT compares the strings), so the explicit write wins the tie and
    a retried or late event cannot bring back what it replaced."""
    return now + "|"

"""The time as the hub writes it into its records: UTC, ISO 8601, milliseconds (``now_iso``).

A leaf module (it imports nothing from the product), so every layer, the customer store in
``preferences`` included, stamps records the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now_iso"]


def now_iso() -> str:
    """Now, e.g. ``2026-11-24T08:00:00.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")

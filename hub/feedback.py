"""Acting on feedback: low ratings raised upstream and kept on the operators' follow-up list,
ratings aggregated per driver and per shop with their trend.

(Interface only; being built.)
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from .config import Settings

__all__ = ["followups", "forget_customer", "mark_handled", "ratings_summary"]


async def followups(
    redis: Redis, settings: Settings, *, include_handled: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The follow-up list, newest first: ``{"delivery_id", "customer_id", "rating", "comment",
    "driver_id", "merchant_id", "at", "handled_at", "handled_by"}``."""
    return []


async def mark_handled(redis: Redis, settings: Settings, delivery_id: str, by: str) -> bool:
    """Mark a follow-up handled (False: no such entry)."""
    return False


async def ratings_summary(redis: Redis, settings: Settings, by: str) -> list[dict[str, Any]]:
    """Ratings per driver or per shop (``by`` "driver" | "merchant"):
    ``{"id", "count", "average", "last_7_days": {"count", "average"},
    "previous_7_days": {"count", "average"}, "trend": float | None}``, most ratings first."""
    return []


async def forget_customer(redis: Redis, settings: Settings, customer_id: str) -> None:
    """Erasure: the customer's follow-ups lose their comment and customer id."""

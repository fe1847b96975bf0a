"""Operators' figures: hourly counters, one increment per fact, never a scan of the message log.

(Interface only; being built.) Facts are dotted names (``message.sms.accepted``,
``attempt.first.delivered``, ``failure.nobody_home``, ``reply.confirm``, ``rating.count``,
``relay.call``, ``webhook.dead``, ...), counted per hour bucket, per shop and per driver.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from .config import Settings

__all__ = ["Stats", "read_stats"]


class Stats:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    async def count(
        self,
        fact: str,
        n: int = 1,
        *,
        merchant_id: str | None = None,
        driver_id: str | None = None,
        at_ms: int | None = None,
    ) -> None:
        """Count one fact in its hour bucket."""

    async def event_applied(self, source: str, event: dict[str, Any], delivery: dict[str, Any]) -> None:
        """The facts an applied event carries (first or later attempt, delivered or failed, why)."""


async def read_stats(
    redis: Redis,
    settings: Settings,
    *,
    start_ms: int,
    end_ms: int,
    merchant_id: str | None = None,
    granularity: str = "hour",
) -> dict[str, Any]:
    """The counters between two times:
    ``{"from", "to", "granularity", "merchant_id", "buckets": [{"start", "counts": {fact: n}}],
    "totals": {fact: n}, "by_merchant": {id: {fact: n}}, "by_driver": {id: {fact: n}}}``."""
    return {
        "from": None,
        "to": None,
        "granularity": granularity,
        "merchant_id": merchant_id,
        "buckets": [],
        "totals": {},
        "by_merchant": {},
        "by_driver": {},
    }

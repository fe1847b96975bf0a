"""When each customer is home: a Beta-Bernoulli model per local weekday and time block.

(Interface only; the model is being built.) ``Availability`` learns from what the hub sees
(attempts delivered or failed, slots chosen, confirmations), answers the availability API and
orders reschedule slots best-first. Every read and write of what was learned goes through here.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from preferences import CustomerRecord

from .config import Settings

__all__ = ["Availability"]


class Availability:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    async def learn(self, source: str, event: dict[str, Any], customer: CustomerRecord) -> None:
        """What an applied event teaches (an attempt delivered or failed), once per event."""

    async def observe_window(self, customer_id: str, key: str, start: str, end: str, home: bool, weight: float) -> None:
        """A stated answer about a window (a chosen slot, a confirmation), once per ``key``."""

    async def p_window(self, customer_id: str, start: str, end: str) -> float | None:
        """The probability the customer is home during the window (None: nothing to go on)."""
        return None

    async def hint(self, customer_id: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        """The availability hint webhooks carry: ``{"p_home": float | None, "best": [blocks]}``."""
        return {"p_home": None, "best": []}

    async def failed_before(self, customer_id: str) -> bool:
        """Whether an earlier attempt to deliver to the customer failed."""
        return False

    async def order_slots(self, event: dict[str, Any], customer: CustomerRecord) -> None:
        """Reorder the event's offered slots best-first in place, when the setting asks for it."""

    async def erase(self, customer_id: str) -> None:
        """Forget everything learned about the customer."""

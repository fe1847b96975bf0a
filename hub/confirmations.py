"""Asking before the route is planned: which customers a ``scheduled`` event asks to confirm.

(Interface only; being built.)
"""

from __future__ import annotations

from typing import Any

from preferences import CustomerRecord

from .availability import Availability
from .config import Settings
from .planner import Plan

__all__ = ["select"]


async def select(
    settings: Settings,
    availability: Availability,
    milestone: str,
    decided: Plan,
    customer: CustomerRecord,
    event: dict[str, Any],
) -> Plan:
    """The plan as the confirmation policy leaves it (a ``scheduled`` event for a customer the
    policy does not select sends nothing)."""
    return decided

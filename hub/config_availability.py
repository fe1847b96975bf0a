"""When customers are home: the settings of the learned model (hub.availability), and of asking
them before the route is planned (hub.confirmations).

What each one does is in docs/availability.md. A section of its own, beside ``config_policy``,
so that the other sections' module stays one reader's sitting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .config_sections import Section

__all__ = ["AvailabilitySettings", "ConfirmationSettings"]


class AvailabilitySettings(Section):
    blocks: tuple[str, ...] = ("08:00", "11:00", "14:00", "17:00", "20:00", "22:00")
    """The boundaries of the day's time blocks in the customer's local time (HH:MM, ascending):
    n boundaries make n - 1 blocks; what happens outside them is not learned (docs/availability.md)."""
    prior_home: float = Field(0.5, gt=0, lt=1)
    """The chance of being home before anything is known: the root of the pooled prior."""
    global_strength: float = Field(2.0, gt=0)
    """How many observations prior_home counts as against the evidence of all customers."""
    area_strength: float = Field(10.0, gt=0)
    """How many observations the all-customers rate counts as inside one area's pool."""
    customer_strength: float = Field(12.0, gt=0)
    """How many observations the area's rate counts as against the customer's own block (all weekdays)."""
    weekday_strength: float = Field(6.0, gt=0)
    """How many observations the customer's block rate counts as against one weekday's own evidence."""
    stated_weight: float = Field(0.5, gt=0, le=1)
    """The weight of a stated answer (a chosen slot, a confirmation) beside an attempt's 1."""
    max_observations: int = Field(200, ge=1, le=10000)
    """The newest observations kept per customer; older ones are forgotten (and leave the area's pool)."""
    half_life_days: float = Field(180.0, ge=0)
    """The age at which a customer's observation counts half; 0: old evidence counts in full."""
    area_grid_degrees: float = Field(0.05, ge=0, le=10)
    """The grid cell (degrees of latitude and longitude) that makes the area of an event without
    delivery.area from its destination's coordinates; 0: such customers share the global pool."""
    order_slots: bool = False
    """List a delivery's offered reschedule slots best-first by the customer's availability; the
    numbered SMS answers follow the order shown."""

    @field_validator("blocks")
    @classmethod
    def _ascending(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        minutes = []
        for text in value:
            hh, _, mm = text.partition(":")
            if not (len(hh) == len(mm) == 2 and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
                raise ValueError(f"{text!r} is not HH:MM")
            minutes.append(int(hh) * 60 + int(mm))
        if len(minutes) < 2 or minutes != sorted(set(minutes)):
            raise ValueError("give at least two boundaries, ascending, e.g. [08:00, 13:00, 18:00]")
        return value


class ConfirmationSettings(Section):
    ask: tuple[Literal["all", "failed_before", "low_availability", "opted_in"], ...] = (
        "failed_before",
        "low_availability",
        "opted_in",
    )
    """Who a `scheduled` event asks to confirm the planned window: all, customers whose latest
    attempt failed recently, customers unlikely to be home in the window, customers who opted in
    (preference `confirm_deliveries`; `false` there is never asked). Others get no message."""
    failed_within_days: float = Field(28.0, gt=0, le=3650)
    """`failed_before` selects a customer whose latest attempt failed (whatever the reason) at most
    this many days ago; a delivery since then, or more time, and they are not asked for it."""
    low_availability_below: float = Field(0.8, ge=0, le=1)
    """`low_availability` selects a customer whose probability of being home in the window is
    below this (a customer the availability model knows nothing about is not selected)."""

"""Delivery policy settings: quiet hours, expiry, collapsing, rate limits, escalation.

What each one does to a waiting message is in docs/delivery-policy.md; ``hub.policy`` applies them.
"""

# Mutable defaults are safe here: pydantic copies them per instance. ruff knows that only of
# classes it sees derive from BaseModel in the same file, and Section comes from config_sections.
# ruff: noqa: RUF012

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from preferences.validation import check_timezone

from .config_sections import Section
from .vocabulary import Channel, Milestone

__all__ = ["PolicySettings", "QuietMode", "QuietWindow"]

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"  # ASCII digits only (\d takes any script's)
QuietMode = Literal["send", "push_only", "defer"]


class QuietWindow(Section):
    start: str = Field(pattern=_HHMM)
    """Local time quiet hours begin, 24-hour HH:MM."""
    end: str = Field(pattern=_HHMM)
    """Local time they end; earlier than start means the window crosses midnight. Equal: none."""


class PolicySettings(Section):
    quiet_hours: QuietWindow | None = QuietWindow(start="21:00", end="08:00")
    """Quiet hours in the customer's own time zone (null: none). Customers can set their own."""
    quiet_hours_by_country: dict[str, QuietWindow] = {}
    """Quiet hours per country (ISO 3166 code of the customer's phone number), before the global ones."""
    timezone_by_country: dict[str, str] = {"US": "America/New_York", "CA": "America/Toronto", "AU": "Australia/Sydney"}
    """Time zone for customers who gave none, by their phone number's country. Countries with one
    time zone need no entry; then `default_timezone` applies."""
    quiet_spread_minutes: float = Field(20.0, ge=0, le=240)
    """Messages held by quiet hours go out spread over this many minutes after the window ends."""
    urgent: dict[Milestone, QuietMode] = {"arriving_soon": "send", "delivery_failed": "push_only"}
    """Milestones that may break quiet hours, and how: send (every channel), push_only (push now,
    other channels wait for the window to end), defer (wait like any other). Unlisted: defer."""
    ttl_minutes: dict[Milestone, float] = {
        "order_confirmed": 4320,
        "shipped": 2880,
        "in_transit": 1440,
        "scheduled": 720,
        "out_for_delivery": 720,
        "arriving_soon": 90,
        "eta_changed": 180,
        "delivered": 2880,
        "delivery_failed": 1440,
        "exception": 1440,
        "rescheduled": 2880,
        "ready_for_pickup": 4320,
        "returned": 4320,
    }
    """How long after the event occurred its messages may still go out (minutes); later they
    are dropped as `expired`. Unlisted milestones never expire."""
    window_bound: tuple[Milestone, ...] = ("out_for_delivery", "arriving_soon", "eta_changed")
    """Milestones whose messages also expire when the delivery's ETA window has ended."""
    collapsible: tuple[Milestone, ...] = ("eta_changed",)
    """Milestones whose messages wait `collapse_seconds` so that a burst sends only the newest."""
    collapse_seconds: float = Field(120.0, ge=0)
    """The collapsing window, opened by the first such message of a delivery."""
    obsoleted_by: dict[Milestone, tuple[Milestone, ...]] = {
        "shipped": ("out_for_delivery", "delivered", "returned"),
        "in_transit": ("out_for_delivery", "arriving_soon", "delivered", "delivery_failed", "returned"),
        "scheduled": (
            "out_for_delivery",
            "arriving_soon",
            "eta_changed",
            "delivered",
            "delivery_failed",
            "rescheduled",
            "returned",
        ),
        "out_for_delivery": ("arriving_soon", "delivered", "delivery_failed", "rescheduled", "returned"),
        "arriving_soon": ("delivered", "delivery_failed", "rescheduled", "ready_for_pickup", "returned"),
        "eta_changed": ("arriving_soon", "delivered", "delivery_failed", "rescheduled", "returned"),
        "delivery_failed": ("delivered", "returned"),
        "exception": ("delivered", "returned"),
        "rescheduled": ("delivered", "returned"),
        "ready_for_pickup": ("delivered", "returned"),
    }
    """A message that waited (quiet hours, collapsing, rate limit, retry) is dropped as
    `superseded` when a newer event of the same milestone, or of one listed here, has arrived."""
    per_customer_hour: dict[Channel, int] = {"sms": 6, "email": 10, "push": 12, "whatsapp": 6}
    """At most this many messages per customer and channel in any hour (0: no limit); more wait."""
    sender_rate: dict[Channel, float] = {"sms": 10.0, "email": 20.0, "push": 0.0, "whatsapp": 10.0}
    """Messages per second per sender (Twilio number or service, SMTP account, FCM project),
    shared by all workers (0: no limit)."""
    sender_max_wait: float = Field(5.0, ge=0)
    """A send waits at most this long (seconds) for its sender's turn; longer, it is rescheduled."""
    escalate_after_minutes: float | None = Field(None, gt=0)
    """Push not confirmed by the app (POST /v1/push/receipts) within this many minutes is followed
    by an SMS, for `escalate_milestones` (null: off)."""
    escalate_milestones: tuple[Milestone, ...] = ("delivery_failed", "ready_for_pickup")
    """Milestones whose unconfirmed push escalates to SMS."""

    @field_validator("timezone_by_country")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        return {country.upper(): check_timezone(tz) for country, tz in value.items()}

    @field_validator("quiet_hours_by_country")
    @classmethod
    def _countries(cls, value: dict[str, QuietWindow]) -> dict[str, QuietWindow]:
        return {country.upper(): window for country, window in value.items()}

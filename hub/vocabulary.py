"""The hub's words: milestones, channels and webhook event types.

A leaf module: it imports nothing from ``hub`` or ``preferences``, so the settings, the event
schema, the customer models and the webhooks can all name these without importing each other.
Adding a milestone starts here (then its templates, policy defaults and channels).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "CHANNELS",
    "MILESTONES",
    "REASON_CODES",
    "WEBHOOK_EVENTS",
    "Channel",
    "Milestone",
    "ReasonCode",
    "WebhookEvent",
]

Milestone = Literal[
    "order_confirmed",
    "shipped",
    "in_transit",
    "scheduled",
    "out_for_delivery",
    "arriving_soon",
    "eta_changed",
    "delivered",
    "delivery_failed",
    "exception",
    "rescheduled",
    "ready_for_pickup",
    "returned",
]
MILESTONES: tuple[str, ...] = get_args(Milestone)

Channel = Literal["sms", "email", "push", "whatsapp"]
CHANNELS: tuple[str, ...] = get_args(Channel)

# What the hub tells subscribers about (docs/webhooks.md); a subscription lists some or all.
WebhookEvent = Literal[
    "message.status",
    "customer.reply",
    "delivery.reschedule_requested",
    "delivery.instructions_updated",
    "delivery.confirmed",
    "feedback.received",
    "feedback.low",
    "contact.opted_out",
    "contact.opted_in",
    "relay.session.opened",
    "relay.session.closed",
    "relay.interaction",
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)

# Why an attempt failed or a parcel is held (``data.reason_code`` of ``delivery_failed``,
# ``exception`` and ``returned``): each has a translated wording (templates/_reasons.j2), so a
# customer reads the reason in their own language; free text (``data.reason``) is passed through
# only when no code fits. The Onfleet and AfterShip adapters map their own codes onto these.
ReasonCode = Literal[
    "nobody_home",
    "business_closed",
    "access_problem",
    "address_problem",
    "refused",
    "damaged",
    "lost",
    "weather",
    "customs",
    "payment_due",
    "id_required",
    "no_safe_place",
    "delayed",
    "customer_request",
]
REASON_CODES: tuple[str, ...] = get_args(ReasonCode)

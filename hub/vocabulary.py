"""The hub's words: milestones, channels and webhook event types.

A leaf module: it imports nothing from ``hub`` or ``preferences``, so the settings, the event
schema, the customer models and the webhooks can all name these without importing each other.
Adding a milestone starts here (then its templates, policy defaults and channels).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CHANNELS", "MILESTONES", "WEBHOOK_EVENTS", "Channel", "Milestone", "WebhookEvent"]

Milestone = Literal[
    "order_confirmed",
    "shipped",
    "in_transit",
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
    "feedback.received",
    "contact.opted_out",
    "contact.opted_in",
    "relay.session.opened",
    "relay.session.closed",
    "relay.interaction",
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)

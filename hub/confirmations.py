"""Asking before the route is planned: which customers a ``scheduled`` event asks to confirm.

A ``scheduled`` event says the planned window (``delivery.eta``) is known, usually the evening
before. Its message is a question (confirm, leave with a neighbour, leave in a safe place, or
another time; hub.prompts, hub.conversation), and a question costs a message and the customer's
attention, so it goes only to the customers ``confirmation.ask`` selects:

- ``all``: everyone;
- ``failed_before``: the customer's latest attempt failed, within ``confirmation.failed_within_days``;
- ``low_availability``: the availability model gives the window a probability of being home
  below ``confirmation.low_availability_below`` (nothing known: not selected);
- ``opted_in``: the customer's preference ``confirm_deliveries`` is true.

A customer whose preference is ``false`` is never asked. For a customer not selected every
planned message becomes a skip with reason ``not_selected``, so the message log says why the
event sent nothing. A question that is planned counts ``scheduled.asked`` in the operators'
figures (hub.stats), once per event processed.
"""

from __future__ import annotations

import logging
from typing import Any

from preferences import CustomerRecord

from .availability import Availability
from .config import Settings
from .planner import Plan, Skipped
from .stats import Stats

__all__ = ["MILESTONE", "reason_to_ask", "select"]

MILESTONE = "scheduled"

log = logging.getLogger(__name__)


async def reason_to_ask(
    settings: Settings, availability: Availability, customer: CustomerRecord, event: dict[str, Any]
) -> str | None:
    """Why the policy asks this customer (the first rule of ``confirmation.ask`` that holds), or
    None: not asked."""
    cfg = settings.confirmation
    wants = customer.prefs.get("confirm_deliveries")
    if wants is False:
        return None
    if "all" in cfg.ask:
        return "all"
    if "opted_in" in cfg.ask and wants is True:
        return "opted_in"
    if "failed_before" in cfg.ask and await availability.failed_before(customer.id):
        return "failed_before"
    eta = event["delivery"].get("eta") or {}
    if "low_availability" in cfg.ask and eta.get("start") and eta.get("end"):
        p_home = await availability.p_window(customer.id, eta["start"], eta["end"])
        if p_home is not None and p_home < cfg.low_availability_below:
            return "low_availability"
    return None


async def select(
    settings: Settings,
    availability: Availability,
    milestone: str,
    decided: Plan,
    customer: CustomerRecord,
    event: dict[str, Any],
) -> Plan:
    """The plan as the confirmation policy leaves it: a ``scheduled`` event for a customer the
    policy does not select sends nothing, each planned message skipped as ``not_selected``."""
    if milestone != MILESTONE or not decided.send:
        return decided
    ids = {"event_id": event["event_id"], "delivery_id": event["delivery"]["id"]}
    why = await reason_to_ask(settings, availability, customer, event)
    if why is None:
        log.info("scheduled: customer not selected for the question, nothing sent", extra=ids)
        skipped = list(decided.skipped)
        for channel in dict.fromkeys(p.channel for p in decided.send):
            skipped.append(Skipped(channel, "not_selected"))
        return Plan([], skipped)
    log.info("scheduled: asking the customer to confirm (%s)", why, extra=ids)
    await Stats(availability.redis, settings).count("scheduled.asked", merchant_id=event["delivery"].get("merchant_id"))
    return decided

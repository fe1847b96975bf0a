"""Which messages an event produces for a customer: channels, addresses, and skips with reasons.

Rules, in order:
1. An erased customer gets nothing.
2. Channels for the milestone come from the customer's preferences (``channels[milestone]``,
   else ``channels["default"]``), else from config (``channels`` per milestone).
3. A channel the customer opted out of (preferences, or STOP by SMS or over WhatsApp, each
   stopping its own channel), or has no usable contact for (none given, or the provider rejected
   it), is skipped, and the log says why; so is WhatsApp while no WhatsApp sender is configured.
   ``stopped_numbers`` holds the numbers that texted STOP, ``whatsapp:<number>`` for a STOP over
   WhatsApp, and ``whatsapp:off`` when WhatsApp has no sender (hub.whatsapp.blocked).
4. If that leaves nothing but the customer is reachable on some channel, the first reachable
   channel of the fallback order (preferences, else config) is used instead; so it is in place
   of WhatsApp when the hub has no WhatsApp sender (``not_configured``), whatever else is left.
   The same order picks the next channel when a send fails permanently (``next_channel``, see
   hub.dispatch).
Push fans out to every registered token. WhatsApp goes to the customer's ``whatsapp`` number,
else to their phone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from preferences import CustomerRecord

__all__ = ["Plan", "Planned", "Skipped", "next_channel", "plan", "reachable"]


@dataclass(frozen=True)
class Planned:
    channel: str
    address: str
    via_fallback: bool = False


@dataclass(frozen=True)
class Skipped:
    channel: str
    reason: str  # "erased" | "opted_out" | "no_contact" | "contact_invalid" | "sms_stopped" | "whatsapp_stopped"
    # | "not_configured" (WhatsApp without a sender)


@dataclass(frozen=True)
class Plan:
    send: list[Planned]
    skipped: list[Skipped]


def reachable(
    customer: CustomerRecord, channel: str, stopped_numbers: frozenset[str] = frozenset()
) -> tuple[list[str], str | None]:
    """The customer's addresses on a channel, or none and why."""
    if customer.erased:
        return [], "erased"
    if channel in set(customer.prefs.get("opt_out") or ()):
        return [], "opted_out"
    addresses = customer.contact(channel)
    if not addresses:
        return [], "contact_invalid" if customer.invalid(channel) else "no_contact"
    if channel == "sms" and addresses[0] in stopped_numbers:
        return [], "sms_stopped"
    if channel == "whatsapp" and "whatsapp:off" in stopped_numbers:
        return [], "not_configured"
    if channel == "whatsapp" and "whatsapp:" + addresses[0] in stopped_numbers:
        return [], "whatsapp_stopped"
    return addresses, None


def next_channel(
    customer: CustomerRecord,
    used: set[str],
    default_fallback: Sequence[str],
    stopped_numbers: frozenset[str] = frozenset(),
) -> list[Planned]:
    """The first reachable channel of the customer's fallback order not ``used`` yet (every
    address on it), or nothing."""
    for channel in customer.prefs.get("fallback") or default_fallback:
        if channel in used:
            continue
        addresses, _ = reachable(customer, channel, stopped_numbers)
        if addresses:
            return [Planned(channel, a, via_fallback=True) for a in addresses]
    return []


def plan(
    milestone: str,
    customer: CustomerRecord | None,
    default_channels: Mapping[str, Sequence[str]],
    default_fallback: Sequence[str],
    stopped_numbers: frozenset[str] = frozenset(),
) -> Plan:
    if customer is None or customer.erased:
        return Plan([], [Skipped("*", "erased" if customer else "no_contact")])
    chosen_map = customer.prefs.get("channels") or {}
    wanted = chosen_map.get(milestone) or chosen_map.get("default") or list(default_channels.get(milestone, ()))
    send: list[Planned] = []
    skipped: list[Skipped] = []
    for channel in wanted:
        addresses, why = reachable(customer, channel, stopped_numbers)
        if why:
            skipped.append(Skipped(channel, why))
        send.extend(Planned(channel, a) for a in addresses)
    if not send or any(s.reason == "not_configured" for s in skipped):
        # Nothing left, or a channel the hub cannot send on at all: the fallback order stands in.
        send += next_channel(customer, set(wanted) | {p.channel for p in send}, default_fallback, stopped_numbers)
    return Plan(send, skipped)

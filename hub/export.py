"""The per-customer export (a GDPR access request): everything the hub holds about one customer,
unmasked, as one JSON document (``hub customers export <id>``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from preferences import CustomerStore

from . import keys
from .config import Settings
from .store import HubStore

__all__ = ["UnknownCustomer", "export_customer"]


class UnknownCustomer(LookupError):
    """The hub holds nothing about this customer."""


async def export_customer(redis: Redis, settings: Settings, customer_id: str) -> dict[str, Any]:
    """Everything the hub holds about one customer, unmasked (a GDPR access request), read
    through the same store calls as the API's GET views."""
    record = await CustomerStore(redis).get(customer_id)
    if record is None:
        raise UnknownCustomer(f"the hub holds no customer with id {customer_id!r}")
    store = HubStore(redis, settings)
    view = record.to_json(unmask=True)
    preferences = view.pop("preferences")
    sms_stop: dict[str, str] | None = None
    open_prompt: Any = None
    if record.phone:
        sms_stop = await redis.hgetall(keys.sms_optout(store.optout_pepper, record.phone)) or None
        # Where the dispatcher keeps it: under the messaging service when one is set, else the number.
        for sender in dict.fromkeys(
            s for s in (settings.twilio.messaging_service_sid, settings.twilio.from_number) if s
        ):
            raw_prompt = await redis.get(keys.conversation(record.phone, sender))
            if raw_prompt:
                open_prompt = json.loads(raw_prompt)
                break
    whatsapp_stop: dict[str, Any] = {}  # shown only when the number sent STOP over WhatsApp
    if record.whatsapp_number:
        found = await redis.hgetall(keys.whatsapp_optout(store.optout_pepper, record.whatsapp_number))
        whatsapp_stop = {"whatsapp_stop": found} if found else {}
    deliveries = []
    for delivery_id in sorted(await redis.smembers(keys.deliveries_of(customer_id))):
        delivery = await store.get_delivery(delivery_id)
        if delivery is None:
            continue
        delivery["timeline"] = await store.timeline(delivery_id)
        delivery["feedback"] = await redis.hgetall(keys.feedback(delivery_id)) or None
        deliveries.append(delivery)
    count = int(await redis.zcard(keys.messages_by_customer(customer_id)))
    messages = await store.list_messages(delivery_id=None, customer_id=customer_id, limit=count) if count else []
    return {
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "customer": view,
        "preferences": preferences,
        "opt_outs": {"channels": preferences.get("opt_out") or [], "sms_stop": sms_stop, **whatsapp_stop},
        "open_prompt": open_prompt,
        "deliveries": deliveries,
        "messages": messages,
    }

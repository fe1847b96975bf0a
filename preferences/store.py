"""Customers in Redis: contacts and preferences in one hash per customer (``hub:customer:{id}``).

Erasing a customer touches the hub's records too (messages, deliveries, links, timelines), so it
is hub.erasure's, not this store's.

Contact fields are stored as plain hash fields; each preference is its own field
(``pref:<name>``, JSON), so a PATCH is a single HSET: no read-modify-write race between two
concurrent updates of different preferences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from hub import keys, lua_records
from hub.clock import explicit_stamp, now_iso
from hub.masking import mask_email, mask_numbers, mask_phone, mask_token

__all__ = ["CONTACT_FIELDS", "CustomerRecord", "CustomerStore", "encode_contact"]

CONTACT_FIELDS = ("name", "phone", "email", "push_tokens", "locale", "timezone", "whatsapp")
PREF_FIELDS = (
    "channels",
    "fallback",
    "quiet_hours",
    "locale",
    "timezone",
    "instructions",
    "opt_out",
    "confirm_deliveries",
)


@dataclass
class CustomerRecord:
    id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    push_tokens: list[str] = field(default_factory=list)
    locale: str | None = None
    timezone: str | None = None
    prefs: dict[str, Any] = field(default_factory=dict)
    erased: bool = False
    updated_at: str | None = None
    phone_invalid: str | None = None  # why the provider rejected the phone number, if it did
    email_invalid: str | None = None  # why the mail server rejected the address, if it did
    whatsapp: str | None = None  # the WhatsApp number, when the customer gave one apart from the phone

    @classmethod
    def from_hash(cls, customer_id: str, raw: dict[str, str]) -> CustomerRecord:
        prefs = {k[5:]: json.loads(v) for k, v in raw.items() if k.startswith("pref:")}
        return cls(
            id=customer_id,
            name=raw.get("name") or None,
            phone=raw.get("phone") or None,
            email=raw.get("email") or None,
            push_tokens=json.loads(raw["push_tokens"]) if raw.get("push_tokens") else [],
            locale=raw.get("locale") or None,
            timezone=raw.get("timezone") or None,
            prefs=prefs,
            erased=raw.get("erased") == "1",
            updated_at=raw.get("updated_at"),
            phone_invalid=raw.get("phone_invalid") or None,
            email_invalid=raw.get("email_invalid") or None,
            whatsapp=raw.get("whatsapp") or None,
        )

    def contact(self, channel: str) -> list[str]:
        """The usable addresses for a channel (several push tokens, at most one phone/e-mail)."""
        if channel == "sms":
            return [self.phone] if self.phone and not self.phone_invalid else []
        if channel == "email":
            return [self.email] if self.email and not self.email_invalid else []
        if channel == "whatsapp":
            return [self.whatsapp_number] if self.whatsapp_number else []
        return list(self.push_tokens)

    @property
    def whatsapp_number(self) -> str | None:
        """The number WhatsApp messages go to: ``whatsapp`` when given, else the phone."""
        return self.whatsapp or self.phone

    def invalid(self, channel: str) -> bool:
        """The contact exists but the provider said it cannot be reached."""
        if channel == "sms":
            return bool(self.phone and self.phone_invalid)
        return bool(channel == "email" and self.email and self.email_invalid)

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "phone": self.phone if unmask else mask_phone(self.phone),
            "email": self.email if unmask else mask_email(self.email),
            "push_tokens": self.push_tokens if unmask else [mask_token(t) for t in self.push_tokens],
            "locale": self.locale,
            "timezone": self.timezone,
            "preferences": self.prefs,
            "erased": self.erased,
            "updated_at": self.updated_at,
            "invalid": {k: v for k, v in (("phone", self.phone_invalid), ("email", self.email_invalid)) if v},
            "whatsapp": self.whatsapp if unmask else mask_phone(self.whatsapp),
        }


def encode_contact(contact: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in CONTACT_FIELDS:
        if contact.get(name) is None:
            continue
        value = contact[name]
        out[name] = json.dumps(value) if name == "push_tokens" else str(value)
    return out


class CustomerStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, customer_id: str) -> CustomerRecord | None:
        raw = await self.redis.hgetall(keys.customer(customer_id))
        if not raw:
            return None
        return CustomerRecord.from_hash(customer_id, raw)

    async def mark_invalid(self, customer_id: str, channel: str, reason: str, address: str) -> bool:
        """Mark the phone or e-mail invalid, if it is still ``address``. True if marked."""
        field_name = {"sms": "phone", "email": "email"}[channel]
        reason = mask_numbers(reason)[:200]
        marked = await self.redis.eval(
            lua_records.MARK_INVALID, 1, keys.customer(customer_id), field_name, address, reason
        )
        return bool(marked)

    async def remove_push_token(self, customer_id: str, token: str) -> bool:
        removed = await self.redis.eval(lua_records.REMOVE_PUSH_TOKEN, 1, keys.customer(customer_id), token)
        return bool(removed)

    async def by_phone(self, e164: str) -> CustomerRecord | None:
        """The customer whose current phone is ``e164`` (via the phone index)."""
        customer_id = await self.redis.get(keys.phone(e164))
        if not customer_id:
            return None
        record = await self.get(customer_id)
        if record is None or record.erased or record.phone != e164:
            return None
        return record

    async def replace(self, customer_id: str, contact: dict[str, Any]) -> bool:
        """PUT: the contact becomes exactly ``contact`` (preferences kept). True if created."""
        fields = encode_contact(contact)
        key = keys.customer(customer_id)
        missing = [f for f in CONTACT_FIELDS if f not in fields]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            if missing:
                pipe.hdel(key, *missing)
            now = now_iso()
            pipe.hset(key, mapping={**fields, "updated_at": now, "contact_at": explicit_stamp(now)})
            # Contacts given explicitly are taken as good again.
            pipe.hdel(key, "erased", "phone_invalid", "email_invalid")
            if "phone" in fields:
                pipe.set(keys.phone(fields["phone"]), customer_id)
            result = await pipe.execute()
        return not result[0]

    async def patch_preferences(self, customer_id: str, prefs: dict[str, Any]) -> bool:
        """Set the given preferences. False when the customer does not exist."""
        key = keys.customer(customer_id)
        mapping = {f"pref:{k}": json.dumps(v) for k, v in prefs.items() if k in PREF_FIELDS}
        args: list[str] = []
        for k, v in {**mapping, "updated_at": now_iso()}.items():
            args += [k, v]
        return bool(await self.redis.eval(lua_records.PATCH_PREFERENCES, 1, key, *args))

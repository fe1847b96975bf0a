"""Customers in Redis: contacts and preferences in one hash per customer (``hub:customer:{id}``).

Contact fields are stored as plain hash fields; each preference is its own field
(``pref:<name>``, JSON), so a PATCH is a single HSET: no read-modify-write race between two
concurrent updates of different preferences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from hub import keys

__all__ = ["CONTACT_FIELDS", "CustomerRecord", "CustomerStore", "encode_contact"]

CONTACT_FIELDS = ("name", "phone", "email", "push_tokens", "locale", "timezone")
PREF_FIELDS = ("channels", "fallback", "quiet_hours", "locale", "timezone", "instructions", "opt_out")


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
        )

    def contact(self, channel: str) -> list[str]:
        """The usable addresses for a channel (several push tokens, at most one phone/e-mail)."""
        if channel == "sms":
            return [self.phone] if self.phone and not self.phone_invalid else []
        if channel == "email":
            return [self.email] if self.email and not self.email_invalid else []
        return list(self.push_tokens)

    def invalid(self, channel: str) -> bool:
        """The contact exists but the provider said it cannot be reached."""
        if channel == "sms":
            return bool(self.phone and self.phone_invalid)
        return bool(channel == "email" and self.email and self.email_invalid)

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        from hub.masking import mask_email, mask_phone, mask_token

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
        }


_PERSONAL_TIMELINE_FIELDS = ("pod", "pickup")


def encode_contact(contact: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in CONTACT_FIELDS:
        if contact.get(name) is None:
            continue
        value = contact[name]
        out[name] = json.dumps(value) if name == "push_tokens" else str(value)
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
        script = (
            "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end "
            "redis.call('HSET', KEYS[1], ARGV[1] .. '_invalid', ARGV[3]) return 1"
        )
        from hub.masking import mask_numbers

        reason = mask_numbers(reason)[:200]
        marked = await self.redis.eval(script, 1, keys.customer(customer_id), field_name, address, reason)
        return bool(marked)

    async def remove_push_token(self, customer_id: str, token: str) -> bool:
        removed = await self.redis.eval(keys.REMOVE_PUSH_TOKEN, 1, keys.customer(customer_id), token)
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

    async def upsert(self, customer_id: str, contact: dict[str, Any]) -> None:
        """Set the given contact fields; others are kept. New contacts lift an erasure."""
        fields = encode_contact(contact)
        key = keys.customer(customer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={**fields, "updated_at": _now()})
            if any(f in fields for f in ("phone", "email", "push_tokens")):
                pipe.hdel(key, "erased")
            await pipe.execute()

    async def replace(self, customer_id: str, contact: dict[str, Any]) -> bool:
        """PUT: the contact becomes exactly ``contact`` (preferences kept). True if created."""
        fields = encode_contact(contact)
        key = keys.customer(customer_id)
        missing = [f for f in CONTACT_FIELDS if f not in fields]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            if missing:
                pipe.hdel(key, *missing)
            now = _now()
            pipe.hset(key, mapping={**fields, "updated_at": now, "contact_at": now})
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
        script = (
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
            "for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end return 1"
        )
        args: list[str] = []
        for k, v in {**mapping, "updated_at": _now()}.items():
            args += [k, v]
        return bool(await self.redis.eval(script, 1, key, *args))

    async def erase(self, customer_id: str) -> bool:
        """Remove personal data: contacts, preferences, addresses in the message log, and from
        the customer's deliveries the address, instructions, reschedule requests, ratings and
        proof-of-delivery details (recipient, place, photo, signature).

        A tombstone (``erased``) stays so later events without contacts send nothing.
        """
        key = keys.customer(customer_id)
        existed = bool(await self.redis.exists(key))
        phone = await self.redis.hget(key, "phone")
        message_ids = await self.redis.zrange(keys.messages_by_customer(customer_id), 0, -1)
        deliveries = await self.redis.smembers(keys.deliveries_of(customer_id))
        timelines = {d: await self.redis.zrange(keys.timeline(d), 0, -1, withscores=True) for d in deliveries}
        # Only the links still theirs: an id of theirs that expired may have gone to another customer.
        links = [
            link_id
            for link_id in await self.redis.smembers(keys.links_of(customer_id))
            if await self.redis.hget(keys.link(link_id), "customer_id") in (customer_id, None)
        ]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if phone and await self.redis.get(keys.phone(phone)) == customer_id:
                pipe.delete(keys.phone(phone))
                # An SMS opt-out (STOP) is kept: a suppression list must outlive the erasure.
            # contact_at: events received before the erasure cannot bring the contacts back.
            now = _now()
            pipe.hset(key, mapping={"erased": "1", "updated_at": now, "contact_at": now})
            # Tracking links stop working at once (their pages answer 410 Gone).
            for link_id in links:
                pipe.delete(keys.link(link_id))
            pipe.delete(keys.links_of(customer_id))
            for message_id in message_ids:
                pipe.hdel(keys.message(message_id), "to", "error", "job")  # job: a dead letter's event
            for delivery_id, entries in timelines.items():
                # The delivery keeps its milestones; who received it, where and what was said go.
                pipe.hdel(keys.delivery(delivery_id), "address", "instructions", "reschedule_requested")
                pipe.delete(keys.feedback(delivery_id))
                for member, score in entries:
                    entry = json.loads(member)
                    if any(k in entry for k in _PERSONAL_TIMELINE_FIELDS):
                        pipe.zrem(keys.timeline(delivery_id), member)
                        kept = {k: v for k, v in entry.items() if k not in _PERSONAL_TIMELINE_FIELDS}
                        pipe.zadd(
                            keys.timeline(delivery_id), {json.dumps(kept, sort_keys=True, separators=(",", ":")): score}
                        )
            await pipe.execute()
        return existed

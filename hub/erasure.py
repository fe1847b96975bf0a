"""Erasing a customer: nothing personal is left in any key name or value.

``erase_customer`` is the one place ``DELETE /v1/customers/{id}`` (and anything else that erases)
goes through. It scrubs the customer's record (contacts, preferences; a tombstone stays), the
addresses in the message log, the deliveries' personal fields and timelines, tracking links, and:

- relay sessions: closed, the customer's number taken out of them, their sticky proxy dropped;
- open reply prompts (``hub:conv:{phone}:{sender}``: the number is in the key's name), the
  WhatsApp ones (``hub:conv:whatsapp:{number}:...``) and the WhatsApp window (``hub:wa_window``);
- jobs of messages still waiting (quiet hours, retries): their payload holds the event, with the
  customer's name and contacts; the messages become ``skipped`` and are never sent;
- outbound webhook records (``hub:wh:{id}``) about the customer: their bodies keep the ids and
  outcome fields, not what the customer wrote (reply texts, notes, comments).

The SMS suppression list (``hub:sms_optout:{ref}``) stays, and so does a WhatsApp STOP
(``hub:wa_optout:{ref}``): their names are keyed hashes, not the number, and a STOP must outlive
the erasure.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis

from preferences import CustomerStore

from . import jobs, keys
from .availability import Availability
from .clock import explicit_stamp, now_iso
from .config import Settings
from .feedback import forget_customer
from .relay import Relay

__all__ = ["WEBHOOK_KEPT_FIELDS", "erase_customer", "migrate_optout_keys"]

log = logging.getLogger(__name__)

# What a webhook body about an erased customer keeps: ids and outcomes, nothing they wrote.
WEBHOOK_KEPT_FIELDS = frozenset(
    {
        "customer_id",
        "delivery_id",
        "message_id",
        "event_id",
        "channel",
        "milestone",
        "status",
        "provider_id",
        "error_code",
        "at",
        "understood_as",
        "message_sid",
        "slot_id",
        "kind",
        "rating",
        "driver_id",
        "via",
    }
)
_WAITING = ("deferred", "transient", "replaying", "dead", "unknown")
# Timeline entries that say who received a parcel and where; an erasure drops those details.
_PERSONAL_TIMELINE_FIELDS = ("pod", "pickup")


async def erase_customer(redis: Redis, settings: Settings, relay: Relay, customer_id: str) -> bool:
    """Erase one customer everywhere; True if the hub knew them."""
    customers = CustomerStore(redis)
    record = await customers.get(customer_id)
    phone = record.phone if record is not None else None
    # Relay first: nothing may route to an erased number.
    for delivery_id in await redis.smembers(keys.deliveries_of(customer_id)):
        session = await relay.for_delivery(delivery_id)
        if session is not None and session.get("customer"):
            await relay.close(session["id"], reason="customer erased")
            await redis.delete(keys.relay_sticky(session["customer"]))
            await redis.hdel(keys.relay_session(session["id"]), "customer")
    if phone:
        async for name in redis.scan_iter(match=keys.conversation(phone, "*"), count=1000):
            await redis.delete(name)
    if record is not None:
        await _erase_whatsapp(redis, settings, record.whatsapp_number)
    await _drop_waiting_jobs(redis, settings, customer_id)
    await _scrub_webhooks(redis, customer_id)
    await Availability(redis, settings).erase(customer_id)  # what was learned goes too
    await forget_customer(redis, settings, customer_id)  # the operators' follow-up list
    return await _scrub_records(redis, customer_id)


async def _scrub_records(redis: Redis, customer_id: str) -> bool:
    """Remove personal data: contacts, preferences, addresses in the message log, and from
    the customer's deliveries the address, instructions, reschedule requests, ratings and
    proof-of-delivery details (recipient, place, photo, signature).

    A tombstone (``erased``) stays so later events without contacts send nothing.
    """
    key = keys.customer(customer_id)
    existed = bool(await redis.exists(key))
    phone = await redis.hget(key, "phone")
    message_ids = await redis.zrange(keys.messages_by_customer(customer_id), 0, -1)
    deliveries = await redis.smembers(keys.deliveries_of(customer_id))
    timelines = {d: await redis.zrange(keys.timeline(d), 0, -1, withscores=True) for d in deliveries}
    # Only the links still theirs: an id of theirs that expired may have gone to another customer.
    links = [
        link_id
        for link_id in await redis.smembers(keys.links_of(customer_id))
        if await redis.hget(keys.link(link_id), "customer_id") in (customer_id, None)
    ]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if phone and await redis.get(keys.phone(phone)) == customer_id:
            pipe.delete(keys.phone(phone))
            # An SMS opt-out (STOP) is kept: a suppression list must outlive the erasure.
        # contact_at: events received before the erasure cannot bring the contacts back.
        now = now_iso()
        pipe.hset(key, mapping={"erased": "1", "updated_at": now, "contact_at": explicit_stamp(now)})
        # Tracking links stop working at once (their pages answer 410 Gone).
        for link_id in links:
            pipe.delete(keys.link(link_id))
        pipe.delete(keys.links_of(customer_id))
        for message_id in message_ids:
            pipe.hdel(keys.message(message_id), "to", "error", "job")  # job: a dead letter's event
        for delivery_id, entries in timelines.items():
            # The delivery keeps its milestones; who received it, where and what was said go.
            pipe.hdel(keys.delivery(delivery_id), "address", "instructions", "reschedule_requested")
            pipe.hdel(keys.delivery(delivery_id), "destination")  # the address's coordinates
            pipe.delete(keys.driver_position(delivery_id))  # the driver near their door (hub.location)
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


async def _erase_whatsapp(redis: Redis, settings: Settings, number: str | None) -> None:
    """The WhatsApp number's open prompts and its 24-hour window (the number is in the prompts'
    key names; the window would let free-form text go to it). A WhatsApp STOP stays, as an SMS
    STOP does. The ``whatsapp`` contact goes with the customer's record."""
    if not number:
        return
    async for name in redis.scan_iter(match=keys.conversation(f"whatsapp:{number}", "*"), count=1000):
        await redis.delete(name)
    await redis.delete(keys.whatsapp_window(keys.optout_pepper(settings.secret_key), number))


async def _drop_waiting_jobs(redis: Redis, settings: Settings, customer_id: str) -> None:
    """Delete the queued jobs of the customer's waiting messages (their payload is the event) and
    mark the messages ``skipped``; the sweeper, finding no job payload, leaves them alone."""
    message_ids = await redis.zrange(keys.messages_by_customer(customer_id), 0, -1)
    queue = settings.worker.queue_name
    for message_id in message_ids:
        status = await redis.hget(keys.message(message_id), "status")
        if status not in _WAITING:
            continue
        async for job_id, _ in redis.zscan_iter(queue, match=jobs.message_jobs_pattern(message_id), count=1000):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(jobs.job_key(job_id))
                pipe.zrem(queue, job_id)
                await pipe.execute()
        if status in ("deferred", "transient", "replaying"):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.message(message_id), "status", "skipped")
                pipe.hdel(keys.message(message_id), "due_at")
                entry = {"status": "skipped", "detail": "the customer was erased"}
                pipe.rpush(keys.message_history(message_id), json.dumps(entry))
                for indexed in ("deferred", "transient", "replaying"):
                    pipe.zrem(keys.messages_by_status(indexed), message_id)
                await pipe.execute()


async def _scrub_webhooks(redis: Redis, customer_id: str) -> None:
    for webhook_id in await redis.smembers(keys.webhooks_of(customer_id)):
        body = await redis.hget(keys.webhook(webhook_id), "body")
        if not body:
            continue
        parsed = json.loads(body)
        data = parsed.get("data") or {}
        parsed["data"] = {k: v for k, v in data.items() if k in WEBHOOK_KEPT_FIELDS} | {"erased": True}
        await redis.hset(keys.webhook(webhook_id), "body", json.dumps(parsed, separators=(",", ":")))
    await redis.delete(keys.webhooks_of(customer_id))


async def migrate_optout_keys(redis: Redis, secret_key: str | None) -> int:
    """Rename SMS opt-outs stored under the plain number (before the keyed names) to their keyed
    names; idempotent, run at start-up. Returns how many were moved."""
    pepper = keys.optout_pepper(secret_key)
    moved = 0
    async for name in redis.scan_iter(match="hub:sms_optout:+*", count=1000):
        text = name.decode() if isinstance(name, bytes) else str(name)
        phone = text.removeprefix("hub:sms_optout:")
        target = keys.sms_optout(pepper, phone)
        if await redis.renamenx(name, target):
            moved += 1
        else:
            await redis.delete(name)  # already recorded under the keyed name
    if moved:
        log.info("moved %d SMS opt-outs to keyed key names", moved)
    return moved

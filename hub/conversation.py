"""Customers' SMS replies: compliance keywords, rescheduling, instructions, ratings, and the
answers to a ``scheduled`` question (1 confirm, 2 neighbour, 3 safe place, 4... another time).

``Conversations.handle(sender, from_, body)`` decides what a reply means, stores its effect,
sends the matching webhook upstream and returns the answer text (sent back as TwiML). The open
prompt for a phone lives in ``hub:conv:{phone}:{sender}`` (set by the pipeline when an SMS that
invites a reply is accepted); the latest prompt wins. Every reply from a customer gets an
answer, never silence; a number that belongs to no customer gets at most
``conversation.unknown_number_answers`` answers a window (``may_answer_stranger``), so an
auto-responder cannot start a loop of texts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from preferences import CustomerRecord, CustomerStore

from . import keys
from .availability import Availability
from .clock import now_iso
from .config import Settings
from .feedback import record_rating
from .i18n import reply_words
from .masking import mask_phone
from .merchants import Merchants
from .prompts import FIRST_SLOT
from .render import Renderer
from .replies import Reply, ReplyWords, parse_reply
from .stats import Stats
from .webhooks import Webhooks
from .whatsapp import split_address

__all__ = ["Answer", "Conversations"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    intent: str  # what the reply was taken as, for logs and the customer.reply webhook


class Conversations:
    def __init__(self, redis: Redis, settings: Settings, renderer: Renderer, customers: CustomerStore) -> None:
        self.redis = redis
        self.settings = settings
        self.optout_pepper = keys.optout_pepper(settings.secret_key)
        self.renderer = renderer
        self.customers = customers
        self.webhooks = Webhooks(redis, settings)
        self.availability = Availability(redis, settings)
        self.merchants = Merchants(redis, settings.brands.merchants, settings.brands.cache_seconds)
        self.reply_words = ReplyWords.of(reply_words(settings.templates_dir))  # from the catalogs

    # -- helpers ---------------------------------------------------------------------------
    def _say(self, locale: str | None, block: str, **context: Any) -> str:
        sender = {"name": self.settings.sender.name, "help_url": self.settings.sender.help_url}
        return self.renderer.render_block(locale, "_replies", block, {"sender": sender, **context})

    async def _merchant(self, prompt: dict[str, Any] | None) -> dict[str, Any] | None:
        """The shop of the prompt's delivery (hub.merchants), as the HELP answer names it."""
        if prompt is None:
            return None
        merchant_id = await self.redis.hget(keys.delivery(prompt["delivery_id"]), "merchant_id")
        found = await self.merchants.get(merchant_id)
        return (
            {"name": found.name, "support_url": found.support_url, "support_phone": found.support_phone}
            if found
            else None
        )

    async def _prompt(self, phone: str, sender: str) -> dict[str, Any] | None:
        candidates = [sender]
        # Prompts are kept under the hub's sender (hub.prompts); a reply to another number of the
        # hub's (a shop's own, hub.merchants) finds them there too.
        service = self.settings.twilio.messaging_service_sid or self.settings.twilio.from_number
        if service and service != sender:
            candidates.append(service)
        for key in candidates:
            raw = await self.redis.get(keys.conversation(phone, key))
            if raw:
                value: dict[str, Any] = json.loads(raw)
                return value
        return None

    async def _delivery_open(self, delivery_id: str) -> bool:
        terminal = await self.redis.hget(keys.delivery(delivery_id), "terminal")
        return bool(terminal != "1")

    def _optout_key(self, phone: str, channel: str) -> str:
        optout = keys.whatsapp_optout if channel == "whatsapp" else keys.sms_optout
        return optout(self.optout_pepper, phone)

    async def opt_out(self, phone: str, keyword: str, sender: str, channel: str = "sms") -> None:
        """Record STOP for a phone on a channel (SMS, or WhatsApp: each stops only its own): when,
        which keyword, to which sender (kept through erasure)."""
        await self.redis.hset(
            self._optout_key(phone, channel),
            mapping={"at": now_iso(), "keyword": keyword.upper(), "sender": sender},
        )

    async def may_answer_stranger(self, phone: str) -> bool:
        """Whether a number no customer has may be answered now: the first
        ``conversation.unknown_number_answers`` texts of each ``unknown_number_window_hours`` are."""
        limits = self.settings.conversation
        if limits.unknown_number_answers == 0:
            return False
        key = keys.stranger_answers(self.optout_pepper, phone)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=max(1, round(limits.unknown_number_window_hours * 3600)), nx=True)
            pipe.incr(key)
            _, answered = await pipe.execute()
        return int(answered) <= limits.unknown_number_answers

    # -- entry point -------------------------------------------------------------------------
    async def handle(self, sender: str, from_: str, body: str, message_sid: str) -> Answer:
        """A reply by SMS, or over WhatsApp (``from_`` and ``sender`` prefixed ``whatsapp:``):
        the same words mean the same, and STOP stops the channel it came on."""
        reply = parse_reply(body, self.reply_words)
        prompt = await self._prompt(from_, sender)
        channel, number = split_address(from_)
        customer = None
        if prompt is not None:
            # The customer the prompt was sent to, while that is still this phone's owner.
            candidate = await self.customers.get(prompt["customer_id"])
            if candidate is not None and not candidate.erased and number in candidate.contact(channel):
                customer = candidate
        if customer is None:
            customer = await self.customers.by_phone(number)
            if customer is not None and number not in customer.contact(channel):
                customer = None  # the phone's owner has another WhatsApp number
        if customer is None:
            if reply.kind == "stop" and (prompt is not None or channel == "whatsapp"):
                # We have texted this number: its STOP is honoured even if no customer owns it now.
                await self.opt_out(number, reply.text, sender, channel)
                return Answer(self._say((prompt or {}).get("locale"), "stop_confirm", channel=channel), "stop")
            if not await self.may_answer_stranger(from_):
                log.info("SMS from an unknown number %s not answered (answered already)", mask_phone(from_))
                return Answer("", "unknown_number_unanswered")
            log.info("SMS from an unknown number %s", mask_phone(from_))
            return Answer(self._say(None, "unknown_number"), "unknown_number")
        if prompt is not None and prompt.get("customer_id") != customer.id:
            prompt = None  # another customer's prompt: not this customer's to answer
        locale = customer.prefs.get("locale") or customer.locale
        answer = await self._dispatch(reply, customer, locale, prompt, sender, from_, message_sid, channel)
        await Stats(self.redis, self.settings).reply(answer.intent, (prompt or {}).get("delivery_id"))
        await self.webhooks.emit(
            "customer.reply",
            {
                "customer_id": customer.id,
                "delivery_id": prompt.get("delivery_id") if prompt else None,
                "text": reply.text,
                "understood_as": answer.intent,
                "message_sid": message_sid,
                "channel": channel,
            },
            key=message_sid,
        )
        log.info("SMS reply understood as %s", answer.intent, extra={"delivery_id": (prompt or {}).get("delivery_id")})
        return answer

    async def _dispatch(
        self,
        reply: Reply,
        customer: CustomerRecord,
        locale: str | None,
        prompt: dict[str, Any] | None,
        sender: str,
        phone: str,
        sid: str,
        channel: str = "sms",
    ) -> Answer:
        if reply.kind in ("stop", "start", "help"):
            number = split_address(phone)[1]
            return await self._keyword(reply, customer, locale, sender, number, sid, prompt, channel)
        now = time.time()
        live = prompt is not None and now < float(prompt.get("expires_at", 0))
        open_delivery = prompt is not None and await self._delivery_open(prompt["delivery_id"])
        locale = (prompt or {}).get("locale") or locale

        if reply.kind == "number":
            return await self._number(reply, customer, locale, prompt, live, open_delivery, sid, channel)
        if reply.kind == "instructions" and prompt is not None and open_delivery:
            assert reply.instruction is not None
            kind, note = reply.instruction, reply.note
            return await self.instruct(customer, prompt, kind, note, reply.always, locale, sid, channel)
        if (
            reply.kind == "text"
            and prompt is not None
            and prompt["prompt"] == "instructions"
            and live
            and open_delivery
        ):
            return await self.instruct(customer, prompt, "note", reply.note, reply.always, locale, sid, channel)
        return Answer(self._not_understood(locale, prompt if live else None, open_delivery), "not_understood")

    async def _keyword(
        self,
        reply: Reply,
        customer: CustomerRecord,
        locale: str | None,
        sender: str,
        phone: str,
        sid: str,
        prompt: dict[str, Any] | None = None,
        channel: str = "sms",
    ) -> Answer:
        """STOP, START and HELP: answered whatever the conversation was about."""
        if reply.kind == "stop":
            await self.opt_out(phone, reply.text, sender, channel)
            await self.webhooks.emit(
                "contact.opted_out",
                {"customer_id": customer.id, "channel": channel, "keyword": reply.text.upper()},
                key=sid,
            )
            return Answer(self._say(locale, "stop_confirm", channel=channel), "stop")
        if reply.kind == "start":
            await self.redis.delete(self._optout_key(phone, channel))
            await self.webhooks.emit("contact.opted_in", {"customer_id": customer.id, "channel": channel}, key=sid)
            return Answer(self._say(locale, "start_confirm", channel=channel), "start")
        return Answer(self._say(locale, "help", merchant=await self._merchant(prompt), channel=channel), "help")

    async def _number(
        self,
        reply: Reply,
        customer: CustomerRecord,
        locale: str | None,
        prompt: dict[str, Any] | None,
        live: bool,
        open_delivery: bool,
        sid: str,
        channel: str = "sms",
    ) -> Answer:
        """A bare number: a slot when slots were offered, else a rating."""
        assert reply.number is not None
        if prompt is None:
            # Most likely an answer to a slot offer that is gone.
            return Answer(self._say(locale, "reschedule_closed", link=None), "number_without_prompt")
        if prompt["prompt"] == "instructions":
            return Answer(self._not_understood(locale, None, open_delivery), "not_understood")
        if prompt["prompt"] == "confirm":
            if not live or not open_delivery:
                return Answer(self._say(locale, "confirm_closed", link=None), "confirm_closed")
            if not 1 <= reply.number < FIRST_SLOT + len(prompt["slots"]):
                return Answer(self._say(locale, "confirm_invalid", slots=len(prompt["slots"])), "confirm_invalid")
            return await self.answer_question(customer, prompt, reply.number, locale, sid, channel)
        if prompt["prompt"] == "reschedule":
            if not live or not open_delivery:
                return Answer(self._say(locale, "reschedule_closed", link=None), "reschedule_closed")
            slots = prompt["slots"]
            if not 1 <= reply.number <= len(slots):
                return Answer(self._say(locale, "reschedule_invalid", count=len(slots)), "reschedule_invalid")
            return await self.reschedule(customer, prompt, slots[reply.number - 1], locale, sid, channel)
        # rating prompt
        if not live:
            return Answer(self._not_understood(locale, None, open_delivery), "rating_closed")
        if not 1 <= reply.number <= 5:
            return Answer(self._say(locale, "rating_invalid"), "rating_invalid")
        return await self.rate(customer, prompt, reply.number, reply.comment, locale, sid, channel)

    def _not_understood(self, locale: str | None, prompt: dict[str, Any] | None, open_delivery: bool) -> str:
        if prompt and prompt["prompt"] == "confirm" and open_delivery:
            return self._say(locale, "confirm_invalid", slots=len(prompt["slots"]))
        slots = len(prompt["slots"]) if prompt and prompt["prompt"] == "reschedule" else 0
        rating = bool(prompt and prompt["prompt"] == "rating")
        return self._say(locale, "not_understood", slots=slots, rating=rating, instructions=open_delivery)

    # -- effects (also used by the tracking page, with channel "web") -------------------------
    # ``prompt`` needs delivery_id (and driver_id for ratings); ``sid`` keys the webhook.
    async def reschedule(
        self,
        customer: CustomerRecord,
        prompt: dict[str, Any],
        slot: dict[str, Any],
        locale: str | None,
        sid: str,
        channel: str = "sms",
    ) -> Answer:
        request = {
            "slot_id": slot["id"],
            "start": slot["start"],
            "end": slot["end"],
            "at": now_iso(),
            "channel": channel,
        }
        await self.redis.hset(keys.delivery(prompt["delivery_id"]), "reschedule_requested", json.dumps(request))
        # A time the customer picked is a time they say they are home.
        weight = self.settings.availability.stated_weight
        await self.availability.observe_window(customer.id, sid, slot["start"], slot["end"], True, weight)
        hint = await self.availability.hint(customer.id, slot["start"], slot["end"])
        await self.webhooks.emit(
            "delivery.reschedule_requested",
            {"delivery_id": prompt["delivery_id"], "customer_id": customer.id, **request, "availability": hint},
            key=sid,
        )
        return Answer(self._say(locale, "reschedule_confirm", slot=slot["label"], channel=channel), "reschedule")

    async def instruct(
        self,
        customer: CustomerRecord,
        prompt: dict[str, Any],
        kind: str,
        note: str,
        always: bool,
        locale: str | None,
        sid: str,
        channel: str = "sms",
        availability: dict[str, Any] | None = None,
    ) -> Answer:
        """``availability``: the hint for the planned window, when this answers its question."""
        instruction = {"kind": kind, "note": note or None, "at": now_iso(), "channel": channel, "always": always}
        await self.redis.hset(keys.delivery(prompt["delivery_id"]), "instructions", json.dumps(instruction))
        if always:
            await self.customers.patch_preferences(customer.id, {"instructions": {"kind": kind, "note": note or None}})
        extra = {"availability": availability} if availability is not None else {}
        await self.webhooks.emit(
            "delivery.instructions_updated",
            {"delivery_id": prompt["delivery_id"], "customer_id": customer.id, **instruction, **extra},
            key=sid,
        )
        return Answer(self._say(locale, "instructions_confirm", kind=kind, note=note, always=always), "instructions")

    async def answer_question(
        self, customer: CustomerRecord, prompt: dict[str, Any], number: int, locale: str | None, sid: str, channel: str
    ) -> Answer:
        """The answer ``number`` to a ``confirm`` prompt (checked in range): 1 confirms the window,
        2 and 3 say where to leave the parcel, 4... pick an offered time."""
        if number >= FIRST_SLOT:
            return await self.reschedule(customer, prompt, prompt["slots"][number - FIRST_SLOT], locale, sid, channel)
        if number == 1:
            return await self.confirm(customer, prompt, locale, sid, channel)
        window = prompt.get("window") or {}
        hint = await self.availability.hint(customer.id, window.get("start"), window.get("end"))
        kind = "neighbour" if number == 2 else "safe_place"
        return await self.instruct(customer, prompt, kind, "", False, locale, sid, channel, availability=hint)

    async def confirm(
        self, customer: CustomerRecord, prompt: dict[str, Any], locale: str | None, sid: str, channel: str = "sms"
    ) -> Answer:
        """The customer will be in during the planned window (``prompt["window"]``)."""
        window = prompt.get("window") or {}
        start, end = window.get("start"), window.get("end")
        if start and end:
            weight = self.settings.availability.stated_weight
            await self.availability.observe_window(customer.id, sid, start, end, True, weight)
            # The window confirmed, as an ISO 8601 interval: the tracking page shows it answered.
            await self.redis.hset(keys.delivery(prompt["delivery_id"]), "confirmed_window", f"{start}/{end}")
        await self.webhooks.emit(
            "delivery.confirmed",
            {
                "delivery_id": prompt["delivery_id"],
                "customer_id": customer.id,
                "window": {"start": start, "end": end},
                "at": now_iso(),
                "channel": channel,
                "availability": await self.availability.hint(customer.id, start, end),
            },
            key=sid,
        )
        return Answer(self._say(locale, "confirm_thanks", window=window.get("label")), "confirm")

    async def rate(
        self,
        customer: CustomerRecord,
        prompt: dict[str, Any],
        rating: int,
        comment: str,
        locale: str | None,
        sid: str,
        channel: str = "sms",
    ) -> Answer:
        at = datetime.now(UTC)
        delivery_id = prompt["delivery_id"]
        driver_id = prompt.get("driver_id") or ""
        merchant_id = await self.redis.hget(keys.delivery(delivery_id), "merchant_id") or ""
        recorded = await record_rating(
            self.redis,
            self.settings,
            delivery_id=delivery_id,
            customer_id=customer.id,
            rating=rating,
            comment=comment,
            driver_id=driver_id,
            merchant_id=merchant_id,
            channel=channel,
            sid=sid,
            at=at,
        )
        if recorded.raise_low:
            low = {
                "delivery_id": delivery_id,
                "customer_id": customer.id,
                "rating": rating,
                "comment": comment or None,
                "driver_id": driver_id or None,
                "merchant_id": merchant_id or None,
                "at": at.isoformat(timespec="milliseconds"),
                "channel": channel,
            }
            await self.webhooks.emit("feedback.low", low, key=sid)
        await self.webhooks.emit(
            "feedback.received",
            {
                "delivery_id": prompt["delivery_id"],
                "customer_id": customer.id,
                "driver_id": driver_id or None,
                "rating": rating,
                "comment": comment or None,
                "channel": channel,
            },
            key=sid,
        )
        return Answer(self._say(locale, "rating_thanks", rating=rating, with_comment=bool(comment)), "rating")


async def feedback_summary(redis: Redis, driver_id: str) -> dict[str, Any]:
    """Count and average rating for a driver, overall and per UTC day (newest first)."""
    raw = await redis.hgetall(keys.feedback_days(driver_id))
    days: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        day, _, what = field.rpartition(":")
        days.setdefault(day, {"count": 0, "sum": 0})[what] = int(value)
    rows = [
        {"day": day, "count": v["count"], "average": round(v["sum"] / v["count"], 2)}
        for day, v in sorted(days.items(), reverse=True)
        if v["count"] > 0
    ]
    count = sum(r["count"] for r in rows)
    total = sum(v["sum"] for v in days.values() if v["count"] > 0)
    return {"driver_id": driver_id, "count": count, "average": round(total / count, 2) if count else None, "days": rows}

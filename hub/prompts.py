"""Reply prompts: what an SMS or a WhatsApp message invites the customer to answer (a rating, a
slot, instructions), remembered per phone and sender so hub.conversation understands the reply."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from . import keys
from .config import Settings
from .context import Formatter
from .i18n import page_strings
from .message import Send

__all__ = [
    "ANSWERS",
    "FIRST_SLOT",
    "answer_number",
    "confirm_prompt",
    "open_prompt",
    "prompt_for",
    "prompt_key",
    "push_actions",
    "stored_question",
]

log = logging.getLogger(__name__)

# The ``confirm`` question's numbers: 1 confirm, 2 neighbour, 3 safe place, then the offered times.
FIRST_SLOT = 4
# The same answers by name, as the tracking page's buttons and the app's push actions give them
# (an offered time is ``slot:<id>``).
ANSWERS = ("confirm", "neighbour", "safe_place")


def prompt_key(settings: Settings, phone: str, channel: str = "sms") -> str:
    """Where the prompt of a message to ``phone`` lives: keyed by the addresses a reply comes from
    and to, as Twilio posts them. An SMS is sent by the messaging service when one is set, else by
    the number; a WhatsApp message by ``whatsapp.from_number``, both with the ``whatsapp:`` prefix."""
    if channel == "whatsapp":
        return keys.conversation(f"whatsapp:{phone}", f"whatsapp:{settings.whatsapp.from_number or ''}")
    return keys.conversation(phone, settings.twilio.messaging_service_sid or settings.twilio.from_number or "")


def prompt_for(send: Send, settings: Settings) -> dict[str, Any] | None:
    """The event's prompt, built once (None: the milestone asks nothing, or it could not be built)."""
    if not send.prompt_built:
        send.prompt_built = True
        try:
            send.prompt = _build(send, settings)
        except (ValueError, OverflowError, KeyError):
            log.exception("could not build the reply prompt; replies will get the options", extra=send.ids)
    return send.prompt


def _build(send: Send, settings: Settings) -> dict[str, Any] | None:
    conv = settings.conversation
    now = time.time()
    milestone, event = send.milestone, send.event
    data = event.get("data") or {}
    slots = data.get("reschedule_slots") or []
    if milestone == "returned":
        return None
    if milestone == "scheduled":
        return confirm_prompt(send, settings, now)
    if milestone == "delivered":
        kind, expires = "rating", now + conv.rating_hours * 3600
    elif slots and milestone in ("out_for_delivery", "delivery_failed", "exception"):
        first = min(datetime.fromisoformat(s["start"]).timestamp() for s in slots)
        kind, expires = "reschedule", min(now + conv.reschedule_hours * 3600, first)
    else:
        kind, expires = "instructions", now + conv.reschedule_hours * 3600
    fmt = Formatter(send.locale, send.timezone)
    driver = send.delivery.get("driver") or event.get("driver") or {}
    return {
        "prompt": kind,
        "delivery_id": send.delivery.get("id") or event["delivery"]["id"],
        "customer_id": event["customer"]["id"],
        "source": send.source,
        "locale": send.locale,
        "timezone": send.timezone,
        "driver_id": driver.get("id"),
        "slots": [
            {"n": n, "id": s["id"], "start": s["start"], "end": s["end"], "label": fmt.slot(s["start"], s["end"])}
            for n, s in enumerate(slots, start=1)
        ]
        if kind == "reschedule"
        else [],
        "expires_at": expires,
    }


def confirm_prompt(send: Send, settings: Settings, now: float) -> dict[str, Any]:
    """The ``scheduled`` question: 1 confirms the planned window, 2 and 3 say where to leave the
    parcel, 4, 5, ... pick an offered time. It can be answered until the window starts (at most
    ``conversation.reschedule_hours``)."""
    event = send.event
    eta = event["delivery"].get("eta") or send.delivery.get("eta") or {}
    fmt = Formatter(send.locale, send.timezone)
    expires = now + settings.conversation.reschedule_hours * 3600
    window = None
    if eta.get("start") and eta.get("end"):
        expires = min(expires, datetime.fromisoformat(eta["start"]).timestamp())
        window = {"start": eta["start"], "end": eta["end"], "label": fmt.window(eta["start"], eta["end"])["window"]}
    slots = (event.get("data") or {}).get("reschedule_slots") or []
    return {
        "prompt": "confirm",
        "delivery_id": send.delivery.get("id") or event["delivery"]["id"],
        "customer_id": event["customer"]["id"],
        "source": send.source,
        "locale": send.locale,
        "timezone": send.timezone,
        "driver_id": None,
        "window": window,
        "slots": [
            {"n": n, "id": s["id"], "start": s["start"], "end": s["end"], "label": fmt.slot(s["start"], s["end"])}
            for n, s in enumerate(slots, start=FIRST_SLOT)
        ],
        "expires_at": expires,
    }


def stored_question(delivery: dict[str, Any], locale: str, timezone: str, now: float) -> dict[str, Any] | None:
    """The ``confirm`` question as the tracking page and the app answer it, from the stored
    delivery: open while its latest milestone is ``scheduled`` and the planned window has not
    started (None otherwise). Offered times whose start has passed are left out."""
    eta = delivery.get("eta") or {}
    if delivery.get("status") != "scheduled" or delivery.get("terminal") or not (eta.get("start") and eta.get("end")):
        return None
    start = datetime.fromisoformat(eta["start"]).timestamp()
    if start <= now:
        return None
    fmt = Formatter(locale, timezone)
    offered = [s for s in delivery.get("slots") or [] if datetime.fromisoformat(s["start"]).timestamp() > now]
    return {
        "prompt": "confirm",
        "delivery_id": delivery["id"],
        "customer_id": delivery.get("customer_id"),
        "locale": locale,
        "timezone": timezone,
        "window": {"start": eta["start"], "end": eta["end"], "label": fmt.window(eta["start"], eta["end"])["window"]},
        "slots": [
            {"n": n, "id": s["id"], "start": s["start"], "end": s["end"], "label": fmt.slot(s["start"], s["end"])}
            for n, s in enumerate(offered, start=FIRST_SLOT)
        ],
        "expires_at": start,
    }


def answer_number(question: dict[str, Any], answer: str) -> int | None:
    """The number of a named answer (``confirm``, ``neighbour``, ``safe_place``, ``slot:<id>``)
    to ``question``; None when it is not one of its answers."""
    if answer in ANSWERS:
        return ANSWERS.index(answer) + 1
    slot_id = answer.removeprefix("slot:") if answer.startswith("slot:") else None
    return next((s["n"] for s in question["slots"] if s["id"] == slot_id), None)


def push_actions(settings: Settings, locale: str) -> dict[str, str]:
    """What a push for ``scheduled`` adds to its data so the app can offer the answers as action
    buttons: ``category`` (the notification category the app registers its buttons under),
    ``actions`` (JSON: ``[{"id", "title"}]``, titled in the customer's language as the
    tracking page's buttons are) and ``answer_url``, where the app posts the one tapped
    (hub.api_answers). The offered times are on the tracking page the push's ``url`` opens."""
    strings = page_strings(settings.templates_dir)
    t = strings.get(locale.split("-")[0].lower()) or strings["en"]
    titles = (t["confirm_yes"], t["confirm_neighbour"], t["confirm_safe_place"])
    actions = [{"id": answer, "title": title} for answer, title in zip(ANSWERS, titles, strict=True)]
    return {
        "category": "scheduled_question",
        "actions": json.dumps(actions, ensure_ascii=False),
        "answer_url": f"{settings.public_url.rstrip('/')}/v1/push/answers",
    }


async def open_prompt(
    redis: Redis, settings: Settings, phone: str, prompt: dict[str, Any], channel: str = "sms"
) -> None:
    """Remember what replies to this SMS (or WhatsApp message) mean (hub.conversation); the latest
    prompt wins, except that an update asking nothing new keeps an open slot offer or question
    for the same delivery."""
    key = prompt_key(settings, phone, channel)
    if prompt["prompt"] == "instructions":
        current = await redis.get(key)
        if current:
            offer = json.loads(current)
            if (
                offer.get("prompt") in ("reschedule", "confirm")
                and offer.get("delivery_id") == prompt["delivery_id"]
                and float(offer.get("expires_at", 0)) > time.time()
            ):
                return
    await redis.set(key, json.dumps(prompt), ex=settings.conversation.keep_days * 86_400)

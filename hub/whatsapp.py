"""WhatsApp's rules for the hub's messages: the 24-hour window, templates, STOP per channel.

WhatsApp lets a business send free-form text only within 24 hours of the customer's last message
to it (the customer service window); anything else must be an approved template, sent through
Twilio as a Content SID with its variables. So:

- every inbound WhatsApp message (``hub.twilio_hooks``) opens the window of its number:
  ``hub:wa_window:{ref}`` with a TTL of ``whatsapp.window_hours``;
- a WhatsApp message (``whatsapp_outbound``, called by hub.dispatch right before the provider
  call) goes out as the rendered SMS text while the window is open, else as the template of its
  milestone and locale (``whatsapp.templates``) filled with ``whatsapp.variables``; with no
  such template it is not sent at all: a permanent failure naming why, after which the
  customer's fallback order takes over. Free-form text never goes out outside the window.
- A STOP sent over WhatsApp stops WhatsApp only (``hub:wa_optout:{ref}``, kept through erasure
  like the SMS suppression list); ``blocked`` tells the planner, the send gate
  (lua_log.CLAIM_MESSAGE) refuses every later WhatsApp send to the number on any path.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from channels import Outbound, SendResult
from preferences import CustomerRecord

from . import keys
from .config import Settings
from .message import Send
from .records import MessageRecord
from .render import Rendered

if TYPE_CHECKING:  # the API (hub.twilio_hooks) uses this module without the send path
    from .compose import Composer

__all__ = [
    "OFF",
    "PREFIX",
    "Windows",
    "blocked",
    "outbound_for",
    "split_address",
    "template_for",
    "variables",
    "whatsapp_outbound",
]

PREFIX = "whatsapp:"
# In the planner's set of blocked addresses: WhatsApp is not configured at all.
OFF = "whatsapp:off"
_SPACES = re.compile(r"\s+")


def split_address(twilio_address: str) -> tuple[str, str]:
    """A Twilio ``From``/``To`` as (channel, E.164): ``whatsapp:+49...`` is WhatsApp."""
    if twilio_address.startswith(PREFIX):
        return "whatsapp", twilio_address[len(PREFIX) :]
    return "sms", twilio_address


async def blocked(
    redis: Redis, settings: Settings, customer: CustomerRecord, known: bool | None = None
) -> frozenset[str]:
    """What the planner must know about WhatsApp for this customer: ``OFF`` when no sender is
    configured, ``whatsapp:<number>`` when that number sent STOP over WhatsApp. ``known``: that
    STOP as already read (lua_log.APPLY_EVENT reads it with the event); else one EXISTS."""
    number = customer.whatsapp_number
    if not settings.whatsapp.from_number:
        return frozenset({OFF})
    if known is None and number:
        known = bool(await redis.exists(keys.whatsapp_optout(keys.optout_pepper(settings.secret_key), number)))
    if number and known:
        return frozenset({PREFIX + number})
    return frozenset()


class Windows:
    """The customer service window of each number (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.pepper = keys.optout_pepper(settings.secret_key)
        self.ttl = max(1, round(settings.whatsapp.window_hours * 3600))

    async def open(self, e164: str) -> None:
        """The number has just written to the hub over WhatsApp."""
        await self.redis.set(keys.whatsapp_window(self.pepper, e164), str(int(time.time())), ex=self.ttl)

    async def is_open(self, e164: str) -> bool:
        return bool(await self.redis.exists(keys.whatsapp_window(self.pepper, e164)))

    async def close(self, e164: str) -> None:
        await self.redis.delete(keys.whatsapp_window(self.pepper, e164))


def template_for(
    settings: Settings, milestone: str, locale: str, shop: dict[str, dict[str, str]] | None = None
) -> str | None:
    """The approved template's Content SID for a milestone in a locale, or in its language: the
    shop's own (``Merchant.whatsapp_templates``) first, then the hub's (``whatsapp.templates``)."""
    for table in (shop or {}, settings.whatsapp.templates):
        by_locale = table.get(milestone) or {}
        if found := by_locale.get(locale) or by_locale.get(locale.split("-")[0]):
            return found
    return None


def variables(settings: Settings, context: dict[str, Any], text: str) -> str:
    """The template variables as Twilio takes them, JSON ``{"1": ..., "2": ...}``: the n-th name
    of ``whatsapp.variables`` fills {{n}}. WhatsApp refuses line breaks and long runs of spaces in
    a variable, so whitespace becomes one space, and an empty value becomes "-"."""
    customer = context.get("customer") or {}
    delivery = context.get("delivery") or {}
    eta = delivery.get("eta") or {}
    values = {
        "name": customer.get("first_name") or customer.get("name") or "",
        "shop": delivery.get("merchant") or (context.get("sender") or {}).get("name") or "",
        "window": eta.get("window") or "",
        "link": context.get("link") or "",
        "tracking_code": delivery.get("tracking_code") or "",
        "text": text,
    }
    filled = {
        str(n): _SPACES.sub(" ", str(values[name])).strip() or "-"
        for n, name in enumerate(settings.whatsapp.variables, start=1)
    }
    return json.dumps(filled, ensure_ascii=False)


def whatsapp_outbound(
    settings: Settings, rec: MessageRecord, rendered: Rendered, context: dict[str, Any], window_open: bool
) -> tuple[Outbound, SendResult | None]:
    """The WhatsApp message for ``rec`` (free-form inside the window, else its template), and the
    permanent failure to record instead of sending it when it may not go out on WhatsApp. The
    message is built either way: a send whose answer was lost is looked up by it."""
    shop = rendered.brand.merchant.whatsapp_templates if rendered.brand else None
    content_sid = template_for(settings, rec.milestone, rec.locale, shop)
    outbound = Outbound(
        rec.id,
        "whatsapp",
        rec.to,
        rendered.sms,
        locale=rec.locale,
        content_sid=None if window_open else content_sid,
        content_variables=variables(settings, context, rendered.sms) if content_sid else None,
    )
    if window_open or content_sid:
        return outbound, None
    why = f"outside the customer's WhatsApp window, and no approved template for {rec.milestone} in {rec.locale}"
    return outbound, SendResult.permanent(why, code="whatsapp_no_template")


async def outbound_for(
    composer: Composer,
    windows: Windows,
    send: Send,
    rec: MessageRecord,
    rendered: Rendered,
    ask: Callable[[Callable[[], Awaitable[bool]]], Awaitable[bool]] | None = None,
) -> tuple[Outbound, SendResult | None]:
    """The adapter's message for ``rec`` on any channel (hub.compose), and for WhatsApp whether
    its rules refuse it. ``ask`` makes the window's Redis call (hub.dispatch passes one that gives
    the claim back if Redis stays away)."""
    if rec.channel != "whatsapp":
        return composer.outbound(rec, rendered, send.link), None

    async def call() -> bool:
        return await windows.is_open(rec.to)

    window_open = await (ask(call) if ask else call())
    return whatsapp_outbound(composer.settings, rec, rendered, send.context or {}, window_open)

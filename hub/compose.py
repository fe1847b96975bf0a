"""What a message says: the tracking link, the rendered templates (once per event and channel:
the parts of the channels the event uses, not every part of every channel), and the
``Outbound`` a channel adapter sends.

A delivery for a registered shop (``delivery.merchant_id``, hub.merchants) speaks as the shop:
its name, logo and colour in the templates, its own templates where it has them, its e-mail
From and Reply-To, and its SMS sender where allowed (``_sms_sender``). The shop is read once per
event (a ``Send``), and carried on the ``Rendered`` message to ``outbound``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from channels import Outbound
from preferences.validation import phone_region

from .config import Settings
from .context import build_context
from .i18n import reason_texts
from .links import Links
from .merchants import Brand, Merchants, is_alphanumeric_sender
from .message import Send
from .prompts import prompt_for, push_actions
from .records import MessageRecord
from .render import Rendered, Renderer, RenderFailure
from .store import HubStore

__all__ = ["Composer"]

# The parts of a rendered message each channel sends.
_PARTS: dict[str, tuple[str, ...]] = {
    "sms": ("sms",),
    "push": ("push_title", "push_body"),
    "email": ("email_subject", "email_text", "email_html"),
    "whatsapp": ("sms",),  # the SMS text, free-form inside the window and as the template's `text` (hub.whatsapp)
}

log = logging.getLogger(__name__)


class Composer:
    def __init__(self, settings: Settings, store: HubStore, renderer: Renderer, links: Links) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.links = links
        self.merchants = Merchants(store.redis, settings.brands.merchants, settings.brands.cache_seconds)

    async def render(self, send: Send, channel: str) -> Rendered | None:
        """The event's templates for the customer, with ``channel``'s parts (None: rendering
        failed, and ``send.render_error`` says why). The first call renders the parts of every
        channel the event has planned so far; a later channel (a fallback) adds its own. A failed
        render is not tried again for the same event: retrying cannot fix a template."""
        async with send.render_lock:
            if channel not in send.rendered_for and send.render_error is None:
                await self._render(send, channel)
        return send.rendered if channel in send.rendered_for else None

    async def _render(self, send: Send, channel: str) -> None:
        if send.context is None:
            delivery_id, customer_id = send.delivery["id"], send.customer.id
            ttl = self.settings.tracking.link_days * 86_400
            candidates = self.links.link_ids(delivery_id, customer_id)
            link_id = await self.store.ensure_link(candidates, delivery_id, customer_id, ttl)
            send.link = self.links.tracking_url(link_id) if link_id else ""
        channels = ({channel} | send.used) & _PARTS.keys() - send.rendered_for
        brand = send.rendered.brand if send.rendered is not None else await self._brand(send)
        try:
            if send.context is None:
                send.context = self._context(send, brand)
            parts = [p for c in channels for p in _PARTS[c]]
            rendered = self.renderer.render(
                send.milestone, send.locale, send.context, parts, brand.id if brand else None
            )
        except (RenderFailure, ValueError, OverflowError, KeyError) as e:
            # Retrying cannot fix a template or data problem: the message fails.
            log.error("rendering failed: %s", e, extra=send.ids)
            send.render_error = str(e)
            return
        if send.rendered is not None:  # the parts rendered before stay
            kept = {p: getattr(send.rendered, p) for c in send.rendered_for for p in _PARTS[c]}
            rendered = replace(rendered, **kept)
        send.rendered = replace(rendered, brand=brand)
        send.rendered_for |= channels

    async def _brand(self, send: Send) -> Brand | None:
        """The delivery's shop (the stored delivery's, else the event's), or None: no shop or an
        id none has, and the hub's own identity applies."""
        merchant_id = send.delivery.get("merchant_id") or send.event["delivery"].get("merchant_id")
        merchant = await self.merchants.get(merchant_id)
        if merchant is None or merchant_id is None:
            return None
        # An SMS that asks for an answer (a slot, a rating) must come from a number that can take it.
        prompt = prompt_for(send, self.settings)
        return Brand(merchant_id, merchant, one_way_sms=prompt is None or prompt["prompt"] == "instructions")

    def _sms_sender(self, brand: Brand | None, to: str) -> str | None:
        """The shop's SMS sender for this message, or None (the hub's): an E.164 number always; an
        alphanumeric id only when the message asks for no answer and the customer's country
        (brands.alphanumeric_countries) accepts one."""
        sender = brand.merchant.sms_sender if brand else None
        if brand is None or not sender:
            return None
        if not is_alphanumeric_sender(sender):
            return sender
        allowed = self.settings.brands.alphanumeric_countries
        return sender if brand.one_way_sms and phone_region(to) in allowed else None

    def _context(self, send: Send, brand: Brand | None) -> dict[str, Any]:
        return build_context(
            event=send.event,
            delivery=send.delivery,
            customer_name=send.customer.name,
            locale=send.locale,
            timezone=send.timezone,
            sender=self.settings.sender.model_dump(),
            link=send.link,
            unsubscribe_url=self.links.unsubscribe_url(send.customer.id),
            driver_contact=send.driver_contact,
            reasons=self._reasons(send),
            merchant=brand.context(self.settings.public_url) if brand else None,
        )

    def _reasons(self, send: Send) -> dict[str, str] | None:
        # Read only for an event with a reason code: finding the catalogs' version costs a stat each.
        if not (send.event.get("data") or {}).get("reason_code"):
            return None
        return reason_texts(self.settings.templates_dir).get(self.renderer.resolve_locale(send.locale))

    def outbound(self, rec: MessageRecord, rendered: Rendered, link: str = "") -> Outbound:
        brand = rendered.brand
        if rec.channel == "sms":
            sender = self._sms_sender(brand, rec.to)
            return Outbound(rec.id, "sms", rec.to, rendered.sms, locale=rec.locale, brand_sender=sender)
        if rec.channel == "email":
            return Outbound(
                rec.id,
                "email",
                rec.to,
                rendered.email_text,
                subject=rendered.email_subject,
                html=rendered.email_html,
                unsubscribe_url=self.links.unsubscribe_url(rec.customer_id),
                locale=rec.locale,
                email_from=brand.merchant.email_from if brand else None,
                reply_to=brand.merchant.reply_to if brand else None,
            )
        return Outbound(
            rec.id,
            "push",
            rec.to,
            rendered.push_body,
            subject=rendered.push_title,
            data={
                "delivery_id": rec.delivery_id,
                "milestone": rec.milestone,
                "event_id": rec.event_id,
                "message_id": rec.id,
                "receipt": self.links.receipt_token(rec.id),
                "url": link,
                # A scheduled question's answers, as action buttons (hub.api_answers).
                **(push_actions(self.settings, rendered.locale) if rec.milestone == "scheduled" else {}),
            },
            collapse_key=f"delivery-{rec.delivery_id}"[:64],
            locale=rec.locale,
        )

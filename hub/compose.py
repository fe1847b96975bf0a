"""What a message says: the tracking link, the rendered templates (once per event and channel:
the parts of the channels the event uses, not every part of every channel), and the
``Outbound`` a channel adapter sends."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from channels import Outbound

from .config import Settings
from .context import build_context
from .i18n import reason_texts
from .links import Links
from .message import Send
from .records import MessageRecord
from .render import Rendered, Renderer, RenderFailure
from .store import HubStore

__all__ = ["Composer"]

# The parts of a rendered message each channel sends.
_PARTS: dict[str, tuple[str, ...]] = {
    "sms": ("sms",),
    "push": ("push_title", "push_body"),
    "email": ("email_subject", "email_text", "email_html"),
}

log = logging.getLogger(__name__)


class Composer:
    def __init__(self, settings: Settings, store: HubStore, renderer: Renderer, links: Links) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.links = links

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
        try:
            if send.context is None:
                send.context = self._context(send)
            rendered = self.renderer.render(
                send.milestone, send.locale, send.context, [p for c in channels for p in _PARTS[c]]
            )
        except (RenderFailure, ValueError, OverflowError, KeyError) as e:
            # Retrying cannot fix a template or data problem: the message fails.
            log.error("rendering failed: %s", e, extra=send.ids)
            send.render_error = str(e)
            return
        if send.rendered is not None:  # the parts rendered before stay
            kept = {p: getattr(send.rendered, p) for c in send.rendered_for for p in _PARTS[c]}
            rendered = replace(rendered, **kept)
        send.rendered = rendered
        send.rendered_for |= channels

    def _context(self, send: Send) -> dict[str, Any]:
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
        )

    def _reasons(self, send: Send) -> dict[str, str] | None:
        # Read only for an event with a reason code: finding the catalogs' version costs a stat each.
        if not (send.event.get("data") or {}).get("reason_code"):
            return None
        return reason_texts(self.settings.templates_dir).get(self.renderer.resolve_locale(send.locale))

    def outbound(self, rec: MessageRecord, rendered: Rendered, link: str = "") -> Outbound:
        if rec.channel == "sms":
            return Outbound(rec.id, "sms", rec.to, rendered.sms, locale=rec.locale)
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
            },
            collapse_key=f"delivery-{rec.delivery_id}"[:64],
            locale=rec.locale,
        )

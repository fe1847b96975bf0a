"""WhatsApp in the Twilio fake: ``whatsapp:`` addresses, Content templates, read receipts, and a
customer writing to the hub over WhatsApp.

Twilio serves WhatsApp through the same Messages API as SMS, so the fake does too
(``twilio_fake``); what differs lives here:

- the ledger records a WhatsApp message with ``"channel": "whatsapp"`` and the bare E.164
  number in ``to``/``from`` (``ledger_address``);
- a message sent as a Content template (``ContentSid`` + ``ContentVariables``) has no template
  text in the sandbox: its body is the variables' values joined by `` | `` (``template_body``),
  and ``meta`` keeps ``content_sid`` and ``content_variables``;
- the status lifecycle of a WhatsApp message ends with ``read`` after ``delivered``;
- ``POST {prefix}/whatsapp/inbound`` (JSON ``{"from", "body"}``, optionally ``"to"``; default
  the hub's WhatsApp number, ``Sandbox.whatsapp_number``) simulates a customer's WhatsApp
  message: Twilio's inbound webhook, signed, with ``From``/``To`` prefixed ``whatsapp:``, to the
  same ``/webhooks/twilio/sms`` as an SMS; the hub's TwiML answer is recorded as a WhatsApp reply.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from aiohttp import web

from ._formats import json_error
from .ledger import Channel

__all__ = ["PREFIX", "WhatsAppInbound", "bare", "ledger_address", "lifecycle", "template_body"]

PREFIX = "whatsapp:"
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def bare(address: str) -> str:
    return address.removeprefix(PREFIX)


def ledger_address(address: str | None) -> tuple[Channel, str | None]:
    """The ledger's channel and address for a Twilio address."""
    if address and address.startswith(PREFIX):
        return "whatsapp", bare(address)
    return "sms", address


def template_body(variables: str) -> str | None:
    """The sandbox's text of a template message: its variables' values in order (None: the
    variables are not a JSON object, which Twilio refuses)."""
    try:
        values = json.loads(variables or "{}")
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    return " | ".join(str(values[k]) for k in sorted(values, key=lambda k: (len(str(k)), str(k))))


def lifecycle(to: str, failing: bool) -> tuple[str, ...]:
    """The statuses a message moves through after it is accepted."""
    if failing:
        return ("sent", "undelivered")
    return ("sent", "delivered", "read") if to.startswith(PREFIX) else ("sent", "delivered")


class _Phones(Protocol):
    async def simulate_inbound(self, from_: str, to: str, body: str) -> dict[str, Any]: ...


class _Sandbox(Protocol):
    """What the handler needs of ``core.Sandbox`` (named structurally: core imports this module)."""

    whatsapp_number: str | None

    @property
    def hub_url(self) -> str | None: ...

    @property
    def twilio_webhooks(self) -> _Phones: ...


class WhatsAppInbound:
    """``POST {prefix}/whatsapp/inbound``: a customer writes to the hub over WhatsApp."""

    def __init__(self, sandbox: _Sandbox) -> None:
        self.sandbox = sandbox

    def add_routes(self, app: web.Application, prefix: str) -> None:
        app.router.add_post(f"{prefix}/whatsapp/inbound", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            payload: Any = await request.json()
        except (ValueError, UnicodeDecodeError):
            return json_error(400, "body must be JSON")
        if not isinstance(payload, dict):
            return json_error(400, "body must be a JSON object")
        from_, body, to = payload.get("from"), payload.get("body"), payload.get("to", self.sandbox.whatsapp_number)
        if not isinstance(from_, str) or not _E164.match(bare(from_)):
            return json_error(400, "'from' must be an E.164 number, e.g. +4915112345678")
        if not isinstance(body, str) or not body.strip():
            return json_error(400, "'body' must be a non-empty string")
        if to is None:
            return json_error(409, "the hub's WhatsApp number is not set (whatsapp.from_number); give 'to'")
        if not isinstance(to, str) or not _E164.match(bare(to)):
            return json_error(400, "'to' must be an E.164 number")
        if self.sandbox.hub_url is None:
            return json_error(409, "hub_url is not set; set Sandbox.hub_url before simulating inbound messages")
        webhooks = self.sandbox.twilio_webhooks
        result = await webhooks.simulate_inbound(PREFIX + bare(from_), PREFIX + bare(to), body)
        return web.json_response(result, status=502 if "error" in result else 200)

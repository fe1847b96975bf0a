"""What Twilio posts to the hub: status callbacks, and texts and calls from simulated phones.

Every request is signed with ``X-Twilio-Signature`` under the account's auth token, as Twilio
signs it, so the hub checks the sandbox's webhooks exactly as it checks Twilio's.

``POST {prefix}/sms/inbound`` (JSON ``{"from", "to", "body"}``) simulates a handset texting
the hub: Twilio's inbound webhook fields are POSTed, signed, to ``hub_url +
"/webhooks/twilio/sms"``. ``<Message>`` replies in the hub's TwiML answer are recorded in the
ledger as outbound SMS with ``meta.direction == "reply"``.

``POST {prefix}/voice/inbound`` (JSON ``{"from", "to"}``) simulates a phone calling one of the
hub's numbers (a relay's proxy number): Twilio's voice webhook is POSTed to ``hub_url +
"/webhooks/twilio/voice"`` and the answer says whom the TwiML would ring, or what it would say.
"""

from __future__ import annotations

import json
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import aiohttp
import phonenumbers
from aiohttp import web
from twilio.request_validator import RequestValidator

from channels.segments import count_segments

from ..masking import mask_phone
from ._formats import json_error, new_sid
from ._outbound import Outbound
from .ledger import Ledger, LedgerEntry
from .whatsapp_fake import ledger_address

__all__ = ["API_VERSION", "INBOUND_WEBHOOK_PATH", "VOICE_WEBHOOK_PATH", "TwilioWebhooks"]

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
INBOUND_WEBHOOK_PATH = "/webhooks/twilio/sms"
VOICE_WEBHOOK_PATH = "/webhooks/twilio/voice"
_USER_AGENT = "TwilioProxy/1.1"
# What could go wrong reaching the hub: it is down, slow, or the sandbox is closing.
_UNREACHABLE = (aiohttp.ClientError, TimeoutError, RuntimeError)


class TwilioWebhooks:
    """Signs and posts Twilio's webhooks; simulates phones that text and call the hub."""

    def __init__(self, *, account_sid: str, auth_token: str, ledger: Ledger, outbound: Outbound) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        # Origin of the hub that receives simulated texts and calls; set once the hub listens.
        self.hub_url: str | None = None
        self._ledger = ledger
        self._outbound = outbound

    def add_routes(self, app: web.Application, prefix: str) -> None:
        app.router.add_post(f"{prefix}/sms/inbound", self.handle_inbound)
        app.router.add_post(f"{prefix}/voice/inbound", self.handle_call)

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """``X-Twilio-Signature`` for a webhook POST of ``params`` to ``url``."""
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def _headers(self, url: str, params: Mapping[str, str]) -> dict[str, str]:
        return {
            "X-Twilio-Signature": self.sign(url, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": _USER_AGENT,
        }

    async def post(self, url: str, params: Mapping[str, str], *, what: str) -> None:
        """POST a signed webhook whose answer does not matter (a status callback)."""
        try:
            status, _, _ = await self._outbound.post_form(url, params, self._headers(url, params))
        except _UNREACHABLE as exc:
            logger.debug("twilio: %s failed: %r", what, exc)
            return
        if status >= 400:
            logger.debug("twilio: %s answered HTTP %s", what, status)

    # -- calls ------------------------------------------------------------------------------

    async def handle_call(self, request: web.Request) -> web.Response:
        """Simulate a phone call from ``from`` to the hub's number ``to`` (e.g. a proxy number):
        post Twilio's signed voice webhook and report what the TwiML answer would do."""
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return json_error(400, "body must be JSON")
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in ("from", "to")):
            return json_error(400, "give 'from' and 'to' as strings")
        if self.hub_url is None:
            return json_error(409, "hub_url is not set")
        return web.json_response(await self.simulate_call(payload["from"], payload["to"]))

    async def simulate_call(self, from_: str, to: str) -> dict[str, Any]:
        url = (self.hub_url or "").rstrip("/") + VOICE_WEBHOOK_PATH
        sid = new_sid("CA")
        params = {
            "CallSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
        }
        headers = {"X-Twilio-Signature": self.sign(url, params), "User-Agent": _USER_AGENT}
        try:
            status, _content_type, text = await self._outbound.post_form(url, params, headers)
        except _UNREACHABLE as exc:
            return {"error": f"could not reach the hub: {exc!r}", "call_sid": sid}
        return {"status": status, "call_sid": sid, "twiml": text, **_call_outcome(text)}

    # -- texts ------------------------------------------------------------------------------

    async def handle_inbound(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return json_error(400, "body must be JSON")
        if not isinstance(payload, dict):
            return json_error(400, "body must be a JSON object")
        fields: dict[str, str] = {}
        for key in ("from", "to", "body"):
            value = payload.get(key)
            if not isinstance(value, str) or (key != "body" and not value):
                return json_error(400, f"'{key}' must be a string")
            fields[key] = value
        if self.hub_url is None:
            return json_error(409, "hub_url is not set; set Sandbox.hub_url before simulating inbound SMS")
        result = await self.simulate_inbound(fields["from"], fields["to"], fields["body"])
        return web.json_response(result, status=502 if "error" in result else 200)

    async def simulate_inbound(self, from_: str, to: str, body: str) -> dict[str, Any]:
        """Post an inbound SMS to the hub as Twilio would (signed); record it and the TwiML answer."""
        url = (self.hub_url or "").rstrip("/") + INBOUND_WEBHOOK_PATH
        sid = new_sid("SM")
        params = self._inbound_params(sid, from_, to, body)
        channel, sender = ledger_address(from_)
        entry = self._ledger.record(
            LedgerEntry(
                channel=channel,
                to=ledger_address(to)[1],
                from_=sender,
                text=body,
                provider_id=sid,
                meta={"direction": "inbound", "webhook_url": url},
            )
        )
        logger.info("twilio: inbound %s from %s", sid, mask_phone(from_))
        try:
            status, content_type, text = await self._outbound.post_form(url, params, self._headers(url, params))
        except _UNREACHABLE as exc:
            entry.meta["hub_status"] = None
            return {"error": f"could not reach the hub: {exc!r}", "message_sid": sid}
        entry.meta["hub_status"] = status
        replies = self._record_replies(text, content_type, from_=from_, to=to) if status < 300 else []
        return {"status": status, "body": text, "message_sid": sid, "replies": replies}

    def _inbound_params(self, sid: str, from_: str, to: str, body: str) -> dict[str, str]:
        """Twilio's inbound SMS webhook fields, in the order Twilio posts them."""
        return {
            "ToCountry": _country(to),
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": _country(from_),
            "To": to,
            "ToZip": "",
            "NumSegments": str(count_segments(body).segments),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        } | self._whatsapp_fields(from_)

    @staticmethod
    def _whatsapp_fields(from_: str) -> dict[str, str]:
        """The fields Twilio adds to a WhatsApp message: the sender's WhatsApp id and name."""
        channel, number = ledger_address(from_)
        return {"WaId": (number or "").lstrip("+"), "ProfileName": ""} if channel == "whatsapp" else {}

    def _record_replies(self, text: str, content_type: str, *, from_: str, to: str) -> list[str]:
        """Record ``<Message>`` verbs of the hub's TwiML answer to a text from ``from_`` to
        ``to`` as outbound replies; return their bodies."""
        if "xml" not in content_type and not text.lstrip().startswith("<"):
            return []
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return []
        replies: list[str] = []
        for verb in root.iter("Message"):
            body_el = verb.find("Body")
            body = ((body_el.text if body_el is not None else verb.text) or "").strip()
            replies.append(body)
            channel, recipient = ledger_address(verb.get("to") or from_)
            self._ledger.record(
                LedgerEntry(
                    channel=channel,
                    to=recipient,
                    from_=ledger_address(verb.get("from") or to)[1],
                    text=body,
                    provider_id=new_sid("SM"),
                    meta={
                        "direction": "reply",
                        "status": "sent",
                        "status_callback": None,
                        "messaging_service_sid": None,
                        "media_urls": [],
                    },
                )
            )
        return replies


def _call_outcome(twiml: str) -> dict[str, Any]:
    """What a voice TwiML answer would do: whom ``<Dial>`` rings, what ``<Say>`` says."""
    outcome: dict[str, Any] = {"would_ring": None, "caller_id": None, "said": None, "hangup": False}
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return outcome
    dial = root.find("Dial")
    if dial is not None:
        number = dial.find("Number")
        rung = number.text if number is not None else dial.text
        outcome["would_ring"] = (rung or "").strip() or None
        outcome["caller_id"] = dial.get("callerId")
        outcome["time_limit"] = dial.get("timeLimit")
    said = root.find("Say")
    outcome["said"] = said.text if said is not None else None
    outcome["hangup"] = root.find("Hangup") is not None
    return outcome


def _country(number: str) -> str:
    """ISO country code of an E.164 number (``whatsapp:`` prefix or not), or ``""``."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number.removeprefix("whatsapp:"), None))
    except phonenumbers.NumberParseException:
        return ""
    return str(region or "")

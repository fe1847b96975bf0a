"""Twilio's webhooks: inbound SMS (``/webhooks/twilio/sms``) and message status callbacks
(``/webhooks/twilio/status``). A WhatsApp sender's webhooks point at the same two URLs: its
messages come with ``From``/``To`` prefixed ``whatsapp:``, open the number's 24-hour window
(hub.whatsapp), and are answered in the same TwiML, which Twilio sends back over WhatsApp.

Both are refused with 403 unless ``X-Twilio-Signature`` validates with twilio's own
``RequestValidator`` against the URL Twilio called: ``public_url`` + path, or, with
``twilio_hooks.trust_forwarded``, the scheme and host from X-Forwarded-Proto/Host. An inbound
SMS is handled once per MessageSid (Twilio retries are answered with an empty TwiML response).
"""

from __future__ import annotations

import logging

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from . import keys
from .appkeys import CONVERSATIONS, RELAY, SETTINGS, SMS, STORE
from .config import Settings
from .errors import ApiError
from .masking import mask_phone
from .relay_hooks import relay_sms, voice, voice_status
from .status import STATUS_RANK, apply_parked, apply_status, park
from .whatsapp import Windows, split_address

__all__ = ["add_routes", "signed_form"]

log = logging.getLogger(__name__)


def called_url(request: web.Request, settings: Settings) -> str:
    if settings.twilio_hooks.trust_forwarded:
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return f"{proto}://{host}{request.path_qs}"
    return settings.public_url.rstrip("/") + request.path_qs


async def signed_form(request: web.Request, settings: Settings) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "Twilio posts application/x-www-form-urlencoded")
    try:
        form = {k: str(v) for k, v in (await request.post()).items()}
    except (ValueError, AssertionError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_form", "the form body could not be read") from e
    signature = request.headers.get("X-Twilio-Signature", "")
    validator = RequestValidator(settings.twilio.auth_token)
    try:
        valid = bool(signature) and validator.validate(called_url(request, settings), form, signature)
    except ValueError:  # e.g. a forwarded host with a port out of range
        valid = False
    if not valid:
        log.warning("Twilio webhook with a missing or wrong signature refused (%s)", request.path)
        raise ApiError(403, "bad_signature", "X-Twilio-Signature does not match this request")
    return form


def twiml(text: str | None) -> web.Response:
    response = MessagingResponse()
    if text:
        response.message(text)
    return web.Response(text=str(response), content_type="application/xml")


async def inbound_sms(request: web.Request) -> web.Response:
    form = await signed_form(request, request.app[SETTINGS])
    sid, from_, to = form.get("MessageSid", ""), form.get("From", ""), form.get("To", "")
    if not sid or not from_:
        raise ApiError(400, "invalid_webhook", "MessageSid and From are required")
    redis = request.app[STORE].redis
    if not await redis.set(keys.inbound(sid), "1", nx=True, ex=7 * 86_400):
        log.info("inbound SMS %s already handled; ignoring the repeat", sid)
        return twiml(None)
    relay = request.app[RELAY]
    try:
        channel, number = split_address(from_)
        if channel == "whatsapp":  # the customer wrote: free-form WhatsApp text may go to them for a while
            await Windows(redis, request.app[SETTINGS]).open(number)
        conversations = request.app[CONVERSATIONS]
        if to in relay.pool:
            return await relay_sms(relay, request.app[SMS], form, conversations.may_answer_stranger)
        answer = await conversations.handle(to, from_, form.get("Body", ""), sid)
    except Exception:
        await redis.delete(keys.inbound(sid))  # let Twilio's retry try again
        raise
    log.info("SMS from %s answered (%s)", mask_phone(from_), answer.intent)
    return twiml(answer.text)


async def status_callback(request: web.Request) -> web.Response:
    form = await signed_form(request, request.app[SETTINGS])
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    error_code = form.get("ErrorCode", "") or ""
    if not sid or status not in STATUS_RANK:
        raise ApiError(400, "invalid_webhook", "MessageSid and a known MessageStatus are required")
    store = request.app[STORE]
    message_id = await store.redis.get(keys.provider(sid))
    conversations = request.app[CONVERSATIONS]
    if not message_id:
        await park(store, sid, status, error_code)  # applied once the worker records the id
        # The worker may have recorded the id (and looked for parked reports) meanwhile.
        message_id = await store.redis.get(keys.provider(sid))
        if message_id:
            await apply_parked(store, conversations.customers, conversations.webhooks, message_id, sid)
        return web.Response(status=204)
    await apply_status(store, conversations.customers, conversations.webhooks, message_id, sid, status, error_code)
    return web.Response(status=204)


async def inbound_call(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    form = await signed_form(request, settings)
    return await voice(request.app[RELAY], settings, form)


async def call_status(request: web.Request) -> web.Response:
    form = await signed_form(request, request.app[SETTINGS])
    return await voice_status(request.app[RELAY], form, request.query.get("session", ""), request.query.get("from", ""))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/voice", inbound_call)
    app.router.add_post("/webhooks/twilio/voice/status", call_status)
    app.router.add_post("/webhooks/twilio/sms", inbound_sms)
    app.router.add_post("/webhooks/twilio/status", status_callback)

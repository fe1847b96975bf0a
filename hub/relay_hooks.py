"""Twilio webhooks of the masked-number relay: calls and texts to proxy numbers.

- ``POST /webhooks/twilio/voice``: from a participant of a live session, TwiML that dials the
  other participant with the proxy number they know as caller id, with a time limit; from
  anyone else, a short spoken refusal and hang-up (or the dispatcher, if configured).
- ``POST /webhooks/twilio/voice/status``: the dial's outcome (status, duration) for the log.
- SMS to a proxy number (routed here by ``twilio_hooks``): forwarded to the other participant
  from their proxy number, media passed on; STOP stops forwarding to the sender in this session.
  A forward is tried once: one whose answer was lost is logged ``unknown``, never resent.

Callers only ever see proxy numbers: the other party's real number appears only inside the
``<Dial><Number>`` instruction, which goes to Twilio and is never shown to the caller, and no log
line or webhook carries a real number.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from channels import Outbound

from . import metrics
from .config import Settings
from .masking import mask_phone
from .relay import Relay, Route
from .replies import START_WORDS, STOP_WORDS
from .stats import Stats

if TYPE_CHECKING:
    from channels.sms import TwilioSms

__all__ = ["relay_sms", "voice", "voice_status"]

log = logging.getLogger(__name__)


MAX_MEDIA = 10  # Twilio passes on at most ten media per message
MAX_CALL_SECONDS = 86_400  # a logged call duration is at most a day


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/xml")


def form_count(form: dict[str, str], name: str, most: int) -> int:
    """A count Twilio sends as text (NumMedia, DialCallDuration): a whole number, at most ``most``;
    anything else (a sign, a fraction, a word, nothing) counts as 0."""
    raw = form.get(name, "").strip()
    if not raw.isdecimal():
        return 0
    return most if len(raw) > len(str(most)) else min(int(raw), most)


def refusal(settings: Settings) -> str:
    response = VoiceResponse()
    response.say(settings.relay.refusal_message, language=settings.relay.voice_language)
    if settings.relay.dispatcher_number:
        response.dial(settings.relay.dispatcher_number, caller_id=None)
    else:
        response.hangup()
    return str(response)


async def voice(relay: Relay, settings: Settings, form: dict[str, str]) -> web.Response:
    caller, proxy = form.get("From", ""), form.get("To", "")
    route = await relay.route(caller, proxy)
    if route is None:
        log.info("call from %s to proxy %s refused (no live session)", mask_phone(caller), proxy)
        metrics.RELAY_CALLS.labels("refused").inc()
        return _xml(refusal(settings))
    response = VoiceResponse()
    dial = response.dial(
        caller_id=route.shown_number,
        time_limit=settings.relay.max_call_seconds,
        action=f"{settings.public_url.rstrip('/')}/webhooks/twilio/voice/status?session={route.session['id']}"
        f"&from={route.role}",
        method="POST",
    )
    dial.number(route.other_real)
    metrics.RELAY_CALLS.labels("connecting").inc()
    await Stats(relay.redis, relay.settings).count("relay.call")
    other = "customer" if route.role == "driver" else "driver"
    await relay.record(
        route.session["id"],
        f"{route.role}->{other}",
        "call",
        "connecting",
        call_sid=form.get("CallSid"),
        key=f"{form.get('CallSid')}:connecting",
    )
    return _xml(str(response))


async def voice_status(relay: Relay, form: dict[str, str], session_id: str, role: str) -> web.Response:
    # The action URL the hub gave the Dial names the session and the caller's role; anything else
    # (a URL not made by the hub, a session since deleted) is answered and not logged.
    if session_id and role in ("driver", "customer") and await relay.get(session_id) is not None:
        dialled = form.get("DialCallStatus", "unknown")
        # Twilio's dial results are a fixed set; anything else (a new value) is counted as other.
        metrics.RELAY_CALLS.labels(dialled if dialled in metrics.RELAY_DIAL_RESULTS else "other").inc()
        other = "customer" if role == "driver" else "driver"
        await relay.record(
            session_id,
            f"{role}->{other}",
            "call",
            form.get("DialCallStatus", "unknown"),
            duration_s=form_count(form, "DialCallDuration", MAX_CALL_SECONDS),
            call_sid=form.get("CallSid"),
            key=f"{form.get('CallSid')}:{form.get('DialCallStatus', 'unknown')}",
        )
    response = VoiceResponse()
    response.hangup()
    return _xml(str(response))


def _other(role: str) -> str:
    return "customer" if role == "driver" else "driver"


async def _not_forwarded(relay: Relay, route: Route, direction: str, body: str) -> str | None:
    """What to answer a text that is not forwarded (START, STOP, or the other side stopped
    forwarding), after recording it; None for a text to forward."""
    sid, role = route.session["id"], route.role
    keyword = " ".join(body.split()).upper().rstrip(".!")
    if keyword in START_WORDS:
        await relay.resume_forwarding(sid, role)
        await relay.record(sid, direction, "sms", "resumed")
        metrics.RELAY_TEXTS.labels("resumed").inc()
        return "Texts from this delivery will be forwarded to you again."
    if keyword in STOP_WORDS:
        await relay.stop_forwarding(sid, role)
        await relay.record(sid, direction, "sms", "stopped")
        metrics.RELAY_TEXTS.labels("stopped").inc()
        return "You will get no more texts forwarded from this delivery. Reply START to undo."
    if route.session.get(f"stopped_{_other(role)}") == "1":
        await relay.record(sid, direction, "sms", "not_forwarded")
        metrics.RELAY_TEXTS.labels("not_forwarded").inc()
        return "This person has asked not to receive texts; please call instead."
    return None


async def relay_sms(
    relay: Relay, sms: TwilioSms, form: dict[str, str], may_answer: Callable[[str], Awaitable[bool]]
) -> web.Response:
    """``may_answer(number)``: whether a sender outside any live session may be told so now (the
    conversations' cap on answers to unknown numbers, so an auto-responder starts no loop)."""
    sender, proxy, body = form.get("From", ""), form.get("To", ""), form.get("Body", "")
    answer = MessagingResponse()
    route = await relay.route(sender, proxy)
    if route is None:
        log.info("text from %s to proxy %s refused (no live session)", mask_phone(sender), proxy)
        metrics.RELAY_TEXTS.labels("refused").inc()
        if await may_answer(sender):
            answer.message("This number only connects a delivery's driver and customer; this conversation has ended.")
        return _xml(str(answer))
    sid = route.session["id"]
    direction = f"{route.role}->{_other(route.role)}"
    said = await _not_forwarded(relay, route, direction, body)
    if said is not None:
        answer.message(said)
        return _xml(str(answer))
    count = form_count(form, "NumMedia", MAX_MEDIA)
    media = tuple(form[f"MediaUrl{i}"] for i in range(count) if form.get(f"MediaUrl{i}"))
    result = await sms.send(
        Outbound(
            f"relay-{form.get('MessageSid', '')}",
            "sms",
            route.other_real,
            body,
            sender=route.shown_number,
            media_urls=media,
        )
    )
    # A forward whose answer was lost (``in_doubt``) is not sent again, nor looked up: a text in
    # a live conversation goes at most once, and the sender, who gets no answer either way, can
    # text again or call. The log says the hub does not know, not that the forward failed.
    forwarded = {"accepted": "forwarded", "in_doubt": "unknown"}.get(result.outcome, "failed")
    metrics.RELAY_TEXTS.labels(forwarded).inc()
    if forwarded == "forwarded":
        await Stats(relay.redis, relay.settings).count("relay.sms")
    await relay.record(
        sid,
        direction,
        "sms",
        forwarded,
        media=len(media),
        key=form.get("MessageSid") or None,
    )
    return _xml(str(answer))

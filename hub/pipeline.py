"""Per event: upsert, timeline, plan, render, send, log. Knows nothing about HTTP.

``Runtime`` holds what a worker creates once (Redis, stores, renderer, channel clients);
``Runtime.process`` handles one event. Exactly-once rests on two things:

- message ids are deterministic (source, event id, channel, address), and
- every message is claimed in the log (Lua, atomic) before its provider call, so a retried or
  re-delivered job skips what was already sent. A message found still ``sending`` by a retry
  belonged to a worker that died mid-call; it is marked ``unknown`` and not sent again (the
  hub prefers a missing message an operator can replay to a duplicate a customer receives).

Errors: ``RetryLater`` (some messages failed transiently and the job should run again).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from channels import Channel, FcmPush, Outbound, SendResult, SmtpEmail, TwilioSms, count_segments
from preferences import CustomerRecord, CustomerStore
from preferences.store import encode_contact

from . import keys
from .config import Settings
from .context import Formatter, build_context
from .links import Links
from .masking import mask
from .planner import Planned, plan
from .relay import PoolExhausted, Relay, RelayUnavailable, schedule_relay_close
from .render import Rendered, Renderer, RenderFailure
from .schema import TERMINAL, occurred_ms_of
from .status import apply_parked
from .store import HubStore, MessageRecord, now_iso
from .webhooks import Webhooks

__all__ = ["RetryLater", "Runtime", "build_channels", "message_id"]

log = logging.getLogger(__name__)

_STATUS = {"accepted": "accepted", "transient": "transient", "permanent": "failed"}


class RetryLater(Exception):
    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.1f}s")
        self.delay = delay


def message_id(source: str, event_id: str, channel: str, address: str) -> str:
    digest = hashlib.sha256(f"{source}\x1f{event_id}\x1f{channel}\x1f{address}".encode()).hexdigest()
    return f"m_{digest[:24]}"


def build_channels(settings: Settings) -> dict[str, Channel]:
    tw, smtp, fcm = settings.twilio, settings.smtp, settings.fcm
    return {
        "sms": TwilioSms(
            account_sid=tw.account_sid,
            auth_token=tw.auth_token,
            from_number=tw.from_number,
            messaging_service_sid=tw.messaging_service_sid,
            status_callback=f"{settings.public_url.rstrip('/')}/webhooks/twilio/status",
            base_url=tw.base_url,
            timeout=tw.timeout,
        ),
        "email": SmtpEmail(
            host=smtp.host,
            port=smtp.port,
            sender=smtp.from_address,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout,
            pool_size=smtp.pool_size,
        ),
        "push": FcmPush(
            project_id=fcm.project_id,
            base_url=fcm.base_url,
            credentials_file=fcm.credentials_file,
            timeout=fcm.timeout,
            max_concurrency=fcm.max_concurrency,
        ),
    }


@dataclass
class Outcome:
    """What processing one event did (returned as the job result, handy in tests and logs)."""

    status: str  # processed | stale | retry
    messages: dict[str, str] = field(default_factory=dict)  # message id -> status


class Runtime:
    def __init__(self, settings: Settings, redis: Redis, channels: dict[str, Channel]) -> None:
        if not settings.secret_key:
            raise ValueError("secret_key is required (set HUB_SECRET_KEY)")
        self.settings = settings
        self.redis = redis
        self.store = HubStore(redis, settings)
        self.customers = CustomerStore(redis)
        self.renderer = Renderer(settings.templates_dir, settings.default_locale)
        self.channels = channels
        self.links = Links(settings.secret_key, settings.public_url)
        self.webhooks = Webhooks(redis, settings)
        self.relay = Relay(redis, settings)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels.values()), return_exceptions=True)

    async def process(self, source: str, event: dict[str, Any], job_try: int = 1) -> Outcome:
        event_id, milestone = event["event_id"], event["type"]
        delivery_in, customer_in = event["delivery"], event["customer"]
        delivery_id, customer_id = delivery_in["id"], customer_in["id"]
        ids = {"event_id": event_id, "delivery_id": delivery_id, "source": source}

        current, customer_raw, stored_delivery, sms_stopped = await self.store.apply_event(
            delivery_id=delivery_id,
            customer_id=customer_id,
            milestone=milestone,
            occurred_ms=occurred_ms_of(event["occurred_at"]),
            terminal=milestone in TERMINAL,
            entry=_timeline_entry(source, event),
            fields=_delivery_fields(event),
            contact=encode_contact(customer_in),
            received_at=event.get("received_at") or "",
        )
        if not current:
            log.info("stale event, nothing sent", extra=ids)
            if job_try > 1:
                await self._supersede(source, event_id, delivery_id)
            await self.store.mark_done(source, event_id)
            return Outcome("stale")

        customer = CustomerRecord.from_hash(customer_id, customer_raw) if customer_raw else None
        delivery = stored_delivery or {"id": delivery_id}
        stopped = (
            frozenset({customer.phone}) if sms_stopped and customer is not None and customer.phone else frozenset()
        )
        decided = plan(milestone, customer, self.settings.channels, self.settings.fallback, stopped)
        prefs = customer.prefs if customer else {}
        locale = self.renderer.resolve_locale(
            prefs.get("locale") or (customer.locale if customer else None) or self.settings.default_locale
        )
        timezone = prefs.get("timezone") or (customer.timezone if customer else None) or self.settings.default_timezone

        def record_for(channel: str, address: str, via_fallback: bool = False) -> MessageRecord:
            return MessageRecord(
                id=message_id(source, event_id, channel, address),
                event_id=event_id,
                source=source,
                delivery_id=delivery_id,
                customer_id=customer_id,
                milestone=milestone,
                channel=channel,
                to=address,
                template=f"{locale}/{milestone}",
                locale=locale,
                via_fallback=via_fallback,
            )

        outcome = Outcome("processed")
        for skip in decided.skipped:
            rec = record_for(skip.channel, "")
            await self.store.claim(rec, status="skipped", detail=skip.reason)
            outcome.messages[rec.id] = "skipped"
        retry_after = 0.0
        driver_contact = await self._relay_for(milestone, delivery, customer, ids)
        if decided.send and customer is not None:
            records = [(p, record_for(p.channel, p.address, p.via_fallback)) for p in decided.send]
            rendered = await self._render(
                milestone, locale, timezone, event, delivery, customer, records, driver_contact
            )
            if rendered is not None:
                try:
                    prompt = self._prompt(milestone, event, delivery, locale, timezone, source)
                except (ValueError, OverflowError, KeyError):
                    log.exception("could not build the reply prompt; replies will get the options", extra=ids)
                    prompt = None
                results = await asyncio.gather(*(self._send_one(p, rec, rendered, ids, prompt) for p, rec in records))
                for (_, rec), (status, result) in zip(records, results, strict=True):
                    outcome.messages[rec.id] = status
                    if status == "transient" and result is not None:
                        outcome.status = "retry"
                        retry_after = max(retry_after, result.retry_after or 0.0)
                        delay = self._backoff(job_try, result.retry_after)
                        if job_try >= self.settings.worker.max_tries:
                            await self.store.record(rec.id, "dead", error=f"gave up after {job_try} tries")
                            outcome.messages[rec.id] = "dead"
                            await self._status_webhook(rec, "dead", None)
                        else:
                            outcome.messages[rec.id] = f"retry in {delay:.0f}s"
                if outcome.status == "retry" and job_try < self.settings.worker.max_tries:
                    raise RetryLater(self._backoff(job_try, retry_after or None))
                outcome.status = "processed"
        await self.store.mark_done(source, event_id)
        return outcome

    async def _relay_for(
        self, milestone: str, delivery: dict[str, Any], customer: CustomerRecord | None, ids: dict[str, str]
    ) -> str | None:
        """Open the masked-number relay on out_for_delivery (when configured), start its closing
        on delivered/returned; return the proxy number that reaches the driver, if any."""
        relay = self.relay
        if not relay.cfg.pool:
            return None
        delivery_id = delivery["id"]
        if milestone in TERMINAL:
            session = await relay.for_delivery(delivery_id)
            if session is not None and session.get("status") == "open":
                await relay.close_after_grace(delivery_id)
                await schedule_relay_close(
                    self.redis, self.settings, session["id"], time.time() + relay.cfg.close_grace_minutes * 60
                )
            return None
        session = await relay.for_delivery(delivery_id)
        driver_phone = (delivery.get("driver") or {}).get("phone")
        wants_session = relay.cfg.auto_open and milestone == "out_for_delivery"
        can_open = bool(driver_phone and customer is not None and customer.phone)
        if wants_session and can_open and (session is None or session.get("status") != "open"):
            assert customer is not None and customer.phone and driver_phone
            try:
                session, _ = await relay.open(delivery_id, driver_phone, customer.phone)
            except (PoolExhausted, RelayUnavailable) as e:
                log.warning("relay not opened: %s", e, extra=ids)
                return None
        if session is None or session.get("status") != "open":
            return None
        await relay.touch(session["id"])
        return session["customer_proxy"]

    async def _supersede(self, source: str, event_id: str, delivery_id: str) -> None:
        """A retry found a newer event for the delivery: its unsent messages are obsolete."""
        for message in await self.store.list_messages(delivery_id=delivery_id, customer_id=None, limit=1000):
            ours = message.get("event_id") == event_id and message.get("source") == source
            if ours and message.get("status") == "transient":
                await self.store.record(
                    message["id"], "superseded", error="a newer event for this delivery arrived before the retry"
                )

    async def _render(
        self,
        milestone: str,
        locale: str,
        timezone: str,
        event: dict[str, Any],
        delivery: dict[str, Any],
        customer: CustomerRecord,
        records: list[tuple[Planned, MessageRecord]],
        driver_contact: str | None = None,
    ) -> Rendered | None:
        try:
            context = build_context(
                event=event,
                delivery=delivery,
                customer_name=customer.name,
                locale=locale,
                timezone=timezone,
                sender=self.settings.sender.model_dump(),
                link=None,
                unsubscribe_url=self.links.unsubscribe_url(customer.id),
                driver_contact=driver_contact,
            )
            return self.renderer.render(milestone, locale, context)
        except (RenderFailure, ValueError, OverflowError, KeyError) as e:
            # Retrying cannot fix a template or data problem: the messages fail, the event ends.
            log.error("rendering failed: %s", e, extra={"event_id": event["event_id"]})
            for _, rec in records:
                await self.store.claim(rec, status="failed", detail=f"rendering: {e}")
            return None

    def _prompt(
        self, milestone: str, event: dict[str, Any], delivery: dict[str, Any], locale: str, timezone: str, source: str
    ) -> dict[str, Any] | None:
        """What an SMS for this milestone invites the customer to answer (see hub.conversation)."""
        conv = self.settings.conversation
        now = time.time()
        data = event.get("data") or {}
        slots = data.get("reschedule_slots") or []
        if milestone == "returned":
            return None
        if milestone == "delivered":
            kind, expires = "rating", now + conv.rating_hours * 3600
        elif slots and milestone in ("out_for_delivery", "delivery_failed", "exception"):
            first = min(datetime.fromisoformat(s["start"]).timestamp() for s in slots)
            kind, expires = "reschedule", min(now + conv.reschedule_hours * 3600, first)
        else:
            kind, expires = "instructions", now + conv.reschedule_hours * 3600
        fmt = Formatter(locale, timezone)
        driver = delivery.get("driver") or event.get("driver") or {}
        return {
            "prompt": kind,
            "delivery_id": delivery.get("id") or event["delivery"]["id"],
            "customer_id": event["customer"]["id"],
            "source": source,
            "locale": locale,
            "timezone": timezone,
            "driver_id": driver.get("id"),
            "slots": [
                {"n": n, "id": s["id"], "start": s["start"], "end": s["end"], "label": fmt.slot(s["start"], s["end"])}
                for n, s in enumerate(slots, start=1)
            ]
            if kind == "reschedule"
            else [],
            "expires_at": expires,
        }

    async def _after_send(self, rec: MessageRecord, result: SendResult, prompt: dict[str, Any] | None) -> None:
        """Follow-ups of a provider answer: open the reply prompt, retire a dead contact."""
        if result.outcome == "accepted" and rec.channel == "sms" and prompt is not None:
            await self._open_prompt(rec.to, prompt)
        if result.outcome == "permanent" and result.contact_invalid:
            reason = f"{result.error_code or ''} {result.reason or ''}".strip()
            if rec.channel == "push":
                await self.customers.remove_push_token(rec.customer_id, rec.to)
            else:
                await self.customers.mark_invalid(rec.customer_id, rec.channel, reason, rec.to)

    async def _open_prompt(self, phone: str, prompt: dict[str, Any]) -> None:
        """Remember what replies to this SMS mean (hub.conversation); the latest prompt wins,
        except that an update asking nothing new keeps an open slot offer for the same delivery."""
        # The same sender the SMS adapter uses: the messaging service when set, else the number.
        sender = self.settings.twilio.messaging_service_sid or self.settings.twilio.from_number or ""
        key = keys.conversation(phone, sender)
        if prompt["prompt"] == "instructions":
            current = await self.redis.get(key)
            if current:
                offer = json.loads(current)
                if (
                    offer.get("prompt") == "reschedule"
                    and offer.get("delivery_id") == prompt["delivery_id"]
                    and float(offer.get("expires_at", 0)) > time.time()
                ):
                    return
        await self.redis.set(key, json.dumps(prompt), ex=self.settings.conversation.keep_days * 86_400)

    async def _status_webhook(self, rec: MessageRecord, status: str, result: SendResult | None) -> None:
        await self.webhooks.emit(
            "message.status",
            {
                "message_id": rec.id,
                "event_id": rec.event_id,
                "delivery_id": rec.delivery_id,
                "customer_id": rec.customer_id,
                "channel": rec.channel,
                "milestone": rec.milestone,
                "status": status,
                "provider_id": result.provider_id if result else None,
                "error_code": result.error_code if result else None,
                "at": now_iso(),
            },
            key=f"{rec.id}:{status}",
        )

    async def _send_one(
        self,
        planned: Planned,
        rec: MessageRecord,
        rendered: Rendered,
        ids: dict[str, str],
        prompt: dict[str, Any] | None = None,
    ) -> tuple[str, SendResult | None]:
        claim = await self.store.claim(rec)
        if claim != "claimed":
            if claim == "sending":
                await self.store.record(
                    rec.id, "unknown", error="a worker stopped during the provider call; not resent"
                )
                await self._status_webhook(rec, "unknown", None)
                return "unknown", None
            return claim, None
        outbound = self._outbound(rec, rendered)
        try:
            result = await self.channels[rec.channel].send(outbound)
        except Exception as e:  # an adapter bug must not lose the message: retry it
            log.exception("channel %s raised", rec.channel, extra={**ids, "message_id": rec.id})
            result = SendResult.transient(f"adapter error: {type(e).__name__}")
        status = _STATUS[result.outcome]
        extra = None
        if rec.channel == "sms":
            info = count_segments(outbound.text)
            extra = {"segments": str(info.segments), "encoding": info.encoding}
        await self.store.record(
            rec.id,
            status,
            provider_id=result.provider_id,
            error=result.reason,
            error_code=result.error_code,
            extra=extra,
        )
        log.info(
            "message %s %s to %s",
            rec.channel,
            status,
            mask(rec.channel, rec.to),
            extra={**ids, "message_id": rec.id},
        )
        await self._after_send(rec, result, prompt)
        if result.provider_id and rec.channel == "sms":
            await apply_parked(self.store, self.customers, self.webhooks, rec.id, result.provider_id)
        if status != "transient":
            await self._status_webhook(rec, status, result)
        return status, result

    def _outbound(self, rec: MessageRecord, rendered: Rendered) -> Outbound:
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
            data={"delivery_id": rec.delivery_id, "milestone": rec.milestone, "event_id": rec.event_id},
            collapse_key=f"delivery-{rec.delivery_id}"[:64],
            locale=rec.locale,
        )

    def _backoff(self, job_try: int, retry_after: float | None) -> float:
        base: float = self.settings.worker.retry_base_delay * (2 ** (job_try - 1))
        delay = base * (0.5 + random.random() / 2)  # jitter spreads retries, not a secret
        return max(delay, retry_after or 0.0)


def _timeline_entry(source: str, event: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "event_id": event["event_id"],
        "type": event["type"],
        "occurred_at": event["occurred_at"],
        "source": source,
    }
    if event.get("received_at"):
        entry["received_at"] = event["received_at"]
    eta = event["delivery"].get("eta")
    if eta:
        entry["eta"] = eta
    data = event.get("data") or {}
    for name in ("pod", "reason", "kind", "pickup"):
        if data.get(name):
            entry[name] = data[name]
    return entry


def _delivery_fields(event: dict[str, Any]) -> dict[str, str]:
    d = event["delivery"]
    fields = {"customer_id": event["customer"]["id"]}
    for name in ("tracking_code", "merchant", "address"):
        if d.get(name):
            fields[name] = d[name]
    if d.get("eta"):
        fields["eta"] = json.dumps(d["eta"])
    if event.get("driver"):
        fields["driver"] = json.dumps(event["driver"])
    return fields

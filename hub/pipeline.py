"""Per event: upsert, timeline, plan, then each message through the delivery policy.

``Runtime`` holds what a worker creates once (Redis, stores, renderer, channel clients, the
``Dispatcher``); ``Runtime.process`` handles one event; hub.dispatch takes each planned message
on from there, hub.outcomes what follows a send, hub.retries a message's own jobs.
Exactly-once rests on two things:

- message ids are deterministic (source, event id, channel, address), and
- every message is claimed in the log (Lua, atomic) before its provider call, so a retried or
  re-delivered job skips what was already sent. A message found still ``sending`` by a retry,
  its lease over, belonged to a worker that died mid-call: an SMS is looked up at Twilio (found:
  recorded sent; not there: a retry that looks again before sending), anything else is marked
  ``unknown`` and not sent again (the hub prefers a missing message an operator can replay to
  a duplicate a customer receives).

Messages due now are sent concurrently inside the event's job; a message that must wait
(quiet hours, collapsing, rate limits, retries) gets a job of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from channels import Channel
from preferences import CustomerRecord
from preferences.store import encode_contact

from . import metrics
from .availability import Availability
from .config import Settings
from .confirmations import select
from .dispatch import Dispatcher
from .jobs import Enqueue, MessageJob, MessageJobKind, message_job_id
from .message import Spec
from .planner import Plan, plan
from .records import Claimed, MessageRecord
from .relay import PoolExhausted, RelayUnavailable, schedule_relay_close
from .retries import MessageJobs
from .schema import TERMINAL, occurred_ms_of
from .stats import Stats
from .whatsapp import blocked as whatsapp_blocked

__all__ = ["Outcome", "Runtime"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What processing one event did (returned as the job result, handy in tests and logs)."""

    status: str  # processed | stale | retry
    messages: dict[str, str] = field(default_factory=dict)  # message id -> status


class Runtime:
    """What a worker creates once (Redis, stores, renderer, channel clients, the dispatcher), and
    ``process`` for one event; sending each message is the dispatcher's part."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        channels: dict[str, Channel],
        *,
        enqueue: Enqueue | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.dispatcher = Dispatcher(settings, redis, channels, enqueue=enqueue, clock=clock)
        self.message_jobs = MessageJobs(self.dispatcher)
        self.store = self.dispatcher.store
        self.relay = self.dispatcher.relay
        self.availability = Availability(redis, settings)
        self.stats = Stats(redis, settings)

    async def run_job(self, source: str, event: dict[str, Any], spec: dict[str, Any], due_ms: int, kind: str) -> str:
        """A message's own job (hub.retries)."""
        return await self.message_jobs.run(source, event, spec, due_ms, kind)

    async def sweep(self, *, grace: float = 60.0, limit: int = 500) -> int:
        return await self.message_jobs.sweep(grace=grace, limit=limit)

    async def resolve_in_doubt(self, rec: MessageRecord) -> str:
        return await self.dispatcher.resolve_in_doubt(rec)

    async def settle(self) -> None:
        """Wait for the writes outliving their jobs (claims given back, outcomes recorded) and
        the webhooks being POSTed."""
        await self.dispatcher.settle()
        await self.dispatcher.webhooks.settle()

    async def close(self) -> None:
        # Claims being given back and outcomes being written (with their follow-ups) outlive
        # their jobs; let them finish within the shutdown grace, and say which did not.
        await self.dispatcher.background.close(max(5.0, self.settings.ops.shutdown_grace_seconds))
        await self.dispatcher.webhooks.close(max(5.0, self.settings.ops.shutdown_grace_seconds))
        await asyncio.gather(*(c.close() for c in self.dispatcher.channels.values()), return_exceptions=True)

    async def process(self, source: str, event: dict[str, Any], job_try: int = 1) -> Outcome:
        event_id, milestone = event["event_id"], event["type"]
        delivery_in, customer_in = event["delivery"], event["customer"]
        delivery_id, customer_id = delivery_in["id"], customer_in["id"]
        ids = {"event_id": event_id, "delivery_id": delivery_id, "source": source}

        current, customer_raw, stored_delivery, sms_stopped, seq, wa_stopped = await self.store.apply_event(
            source=source,
            event_id=event_id,
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
        # Carried in the jobs of messages that wait: what is newer than this event is judged by
        # (occurred_at, arrival), as here.
        event["seq"] = seq
        if not current:
            log.info("stale event, nothing sent", extra=ids)
            if job_try > 1:  # a first try that died mid-send may have left messages in doubt
                await self._settle_in_doubt(source, event)
            await self.store.mark_done(source, event_id)
            return Outcome("stale")

        # No record at all (an event naming only a customer id): every channel is skipped, logged.
        customer = CustomerRecord.from_hash(customer_id, customer_raw or {})
        delivery = stored_delivery or {"id": delivery_id}
        stopped = frozenset({customer.phone}) if sms_stopped and customer.phone else frozenset()
        stopped |= await whatsapp_blocked(self.redis, self.settings, customer, known=wa_stopped)
        decided = await self._decide(source, event, customer, delivery, stopped)
        outcome = Outcome("processed")
        driver_contact = await self._relay_for(milestone, delivery, customer, ids)
        send = self.dispatcher.context(source, event, customer, delivery, stopped, driver_contact)
        for skip in decided.skipped:
            rec = send.record(Spec(skip.channel, ""))
            if isinstance(await self.store.claim(rec, status="skipped", detail=skip.reason), Claimed):
                metrics.MESSAGES.labels(rec.channel, "skipped").inc()
                await self.stats.message(rec.channel, "skipped", delivery.get("merchant_id"))
            outcome.messages[rec.id] = "skipped"
        specs = [Spec(p.channel, p.address, p.via_fallback) for p in decided.send]
        send.used |= {s.channel for s in specs}
        # Every send settles before the job ends, even when one raises (the job is then retried,
        # and must not race sends of its own first try).
        results = await asyncio.gather(
            *(self.dispatcher.deliver(send, s, fresh=True) for s in specs), return_exceptions=True
        )
        for spec, result in zip(specs, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            outcome.messages[send.message_id(spec)] = result
        await self.store.mark_done(source, event_id)
        return outcome

    async def _decide(
        self,
        source: str,
        event: dict[str, Any],
        customer: CustomerRecord,
        delivery: dict[str, Any],
        stopped: frozenset[str],
    ) -> Plan:
        """What the applied event teaches and counts, then which messages it makes."""
        milestone = event["type"]
        await self.availability.learn(source, event, customer)
        await self.stats.event_applied(source, event, delivery)
        await self.availability.order_slots(event, customer)
        decided = plan(milestone, customer, self.settings.channels, self.settings.fallback, stopped)
        return await select(self.settings, self.availability, milestone, decided, customer, event)

    async def _settle_in_doubt(self, source: str, event: dict[str, Any]) -> None:
        """Hand each message a first try of this (now stale) event left ``sending`` (its worker
        died mid-call) to a job of its own: the job builds what a lookup at the provider needs,
        waits out the sending lease and resolves the message (``resolve_in_doubt``)."""
        listed = await self.store.list_messages(delivery_id=event["delivery"]["id"], customer_id=None, limit=1000)
        for m in listed:
            if m.get("event_id") != event["event_id"] or m.get("source") != source or m.get("status") != "sending":
                continue
            if not m.get("to"):  # erased meanwhile: nothing to look up or send; resolved here
                await self.dispatcher.resolve_in_doubt(MessageRecord.from_fields(m))
                continue
            spec = Spec(m["channel"], m["to"], bool(m.get("via_fallback")), m.get("fallback_of") or "")
            # One job per claim cut off (arq queues a job id once): each claim counts an attempt.
            job_id = message_job_id(m["id"], "in-doubt", m.get("attempts", 0))
            job = MessageJob(source, event, asdict(spec), int(self.dispatcher.clock() * 1000), MessageJobKind.RETRY)
            await self.dispatcher.scheduler.later(job, job_id=job_id)

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
    for name in ("tracking_code", "merchant", "address", "merchant_id"):
        if d.get(name):
            fields[name] = d[name]
    if d.get("eta"):
        fields["eta"] = json.dumps(d["eta"])
    if event.get("driver"):
        fields["driver"] = json.dumps(event["driver"])
    if d.get("destination"):  # the address's coordinates, for the tracking page's map
        fields["destination"] = json.dumps(d["destination"])
    slots = (event.get("data") or {}).get("reschedule_slots")
    if slots is not None:  # the latest offer (an empty list withdraws it); the tracking page shows it
        fields["slots"] = json.dumps(slots)
    return fields

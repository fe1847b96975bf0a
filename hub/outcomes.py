"""What follows a provider call: the outcome recorded under the handler's claim, and its
consequences (parked provider reports, the reply prompt, the ``message.status`` webhook, a
retired contact, the next channel, an escalation to SMS).

Transient failures are retried with exponential backoff and jitter (Retry-After honoured) until
``worker.max_tries``, then ``dead`` with what a replay needs. A send whose answer was lost, on a
channel that can be asked (``InDoubtPolicy.RECONCILE``), is a retry that asks the provider first;
``unknown`` once ``worker.max_tries`` tries have ended in doubt, and never sent again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from channels import SendResult
from preferences import CustomerStore

from . import metrics
from .clock import now_iso
from .config import Settings
from .durable import outlasting
from .jobs import MessageJobKind
from .masking import mask
from .message import IN_DOUBT, Scheduler, Send, Spec, job_payload
from .planner import next_channel, reachable
from .prompts import open_prompt, prompt_for
from .records import TOLD, MessageRecord
from .stats import Stats
from .status import apply_parked, tell_status
from .store import HubStore
from .webhooks import Webhooks

__all__ = ["Decision", "Outcomes", "Redeliver"]

log = logging.getLogger(__name__)

# Sends the same news on another channel (hub.dispatch.Dispatcher.deliver, a fresh message).
Redeliver = Callable[[Send, Spec], Awaitable[str]]


@dataclass(frozen=True)
class Decision:
    """How a provider call's outcome is recorded: the status, the error kept with it, when its
    retry is due (a retry only) and the history entry when it is not the status's own."""

    status: str
    error: str | None
    due_ms: int | None = None
    logged: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        """What the history (and the log line) calls it."""
        return self.logged[0] if self.logged else self.status


class Outcomes:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        store: HubStore,
        customers: CustomerStore,
        webhooks: Webhooks,
        scheduler: Scheduler,
        redeliver: Redeliver,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.customers = customers
        self.webhooks = webhooks
        self.scheduler = scheduler
        self.redeliver = redeliver
        self.stats = Stats(redis, settings)

    @property
    def patience(self) -> float:
        """How long a write after a provider call is tried through a Redis outage: the sending lease."""
        return float(self.settings.worker.job_timeout + 5)

    async def conclude(
        self,
        send: Send,
        spec: Spec,
        rec: MessageRecord,
        result: SendResult,
        status: str,
        extra: dict[str, str],
        token: str,
    ) -> tuple[str, int | None]:
        """Record a provider call's outcome under the handler's claim ``token``, through Redis
        outages as long as the sending lease, and do what follows from it at once. Returns the
        status and, for a retry, when it is due; when the claim is no longer this handler's, the
        status found instead, and nothing follows.

        ``status`` ``in_doubt`` (the answer lost, the channel reconciles) is recorded as a retry
        (``transient``, with ``spec`` asking the provider first) logged ``in_doubt`` in the
        history, or ``unknown`` once ``worker.max_tries`` tries have ended in doubt."""
        merchant_id = send.delivery.get("merchant_id") or send.event["delivery"].get("merchant_id")
        if merchant_id:  # kept on the record: the provider's later reports are counted by shop (hub.stats)
            extra["merchant_id"] = merchant_id
        decision = await self._decide(send, spec, rec, result, status, extra)
        at = now_iso()

        def write() -> Awaitable[str]:
            return self.store.settle(
                rec.id,
                token,
                decision.status,
                at=at,
                provider_id=result.provider_id,
                error=decision.error,
                error_code=result.error_code,
                extra=extra or None,
                due_ms=decision.due_ms,
                logged=decision.logged,
            )

        found = await outlasting(write, patience=self.patience)
        if found != "done":
            log.warning(
                "message %s outcome %s not recorded: the message is %s now (its claim ended)",
                rec.channel,
                decision.label,
                found,
                extra={**send.ids, "message_id": rec.id},
            )
            return found, None
        self._count(rec, decision)
        # The figure shares the follow-up's first round trip (hub.redis_batch); it never raises.
        figure = self.stats.message(rec.channel, decision.status, merchant_id)
        await asyncio.gather(figure, self._follow_up(send, spec, rec, result, decision))
        return decision.status, decision.due_ms

    async def _decide(
        self, send: Send, spec: Spec, rec: MessageRecord, result: SendResult, status: str, extra: dict[str, str]
    ) -> Decision:
        """Decided before anything is recorded, while this handler still holds the claim: a retry
        (with its job payload in ``extra``, for the sweeper) or the dead letter, in one write."""
        if status == "unknown":
            return Decision(status, f"{result.reason}; the provider may have it and cannot be asked: not sent again")
        if status == "accepted" and spec.reason == IN_DOUBT:
            logged = ("accepted", "found at the provider after its answer was lost; not sent again")
            return Decision(status, result.reason, logged=logged)
        if status not in ("transient", "in_doubt"):
            return Decision(status, result.reason)
        fields = await outlasting(lambda: self.store.message_fields(rec.id), patience=self.patience)
        attempts = int(fields.get("attempts", "1"))
        max_tries = self.settings.worker.max_tries
        if status == "transient":
            extra["job"] = job_payload(send, spec)  # a dead letter keeps it too: a replay needs it
            if attempts >= max_tries:
                return Decision("dead", f"gave up after {attempts} tries: {result.reason}")
            due_ms = int((self.scheduler.clock() + self._backoff(attempts, result.retry_after)) * 1000)
            return Decision(status, result.reason, due_ms)
        extra["doubt_ms"] = fields.get("doubt_ms") or extra.get("doubt_ms", "0")  # the first
        # Its own count: transient failures before the doubt do not shorten the lookups.
        doubts = int(fields.get("doubts") or 0) + 1
        extra["doubts"] = str(doubts)
        if doubts >= max_tries:
            return Decision("unknown", f"still in doubt after {doubts} tries ({result.reason}); not sent again")
        extra["job"] = job_payload(send, spec)
        wait = max(self._backoff(attempts, None), self._reconcile_after(rec.channel))
        logged = ("in_doubt", f"{result.reason}; the provider may have it: asking it before sending again")
        return Decision("transient", result.reason, int((self.scheduler.clock() + wait) * 1000), logged)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        base: float = self.settings.worker.retry_base_delay * (2 ** (attempt - 1))
        delay = min(base, self.settings.worker.retry_max_delay) * (0.5 + random.random() / 2)  # jitter, not a secret
        return max(delay, retry_after or 0.0)

    def _reconcile_after(self, channel: str) -> float:
        """Seconds before the provider is asked about a send whose answer was lost: as long as
        the client waited, so a request the provider was still working on has ended."""
        timeouts = {"sms": self.settings.twilio.timeout, "whatsapp": self.settings.twilio.timeout}
        timeouts["email"] = self.settings.smtp.timeout
        return float(timeouts.get(channel, self.settings.fcm.timeout))

    @staticmethod
    def _count(rec: MessageRecord, decision: Decision) -> None:
        if decision.label != "in_doubt":  # counted once, when the provider call ended so
            metrics.MESSAGES.labels(rec.channel, decision.status).inc()
        if decision.label == "transient":
            metrics.MESSAGE_RETRIES.labels(rec.channel).inc()
        elif decision.status == "dead":
            metrics.DEAD_LETTERS.labels("message").inc()

    async def _follow_up(
        self, send: Send, spec: Spec, rec: MessageRecord, result: SendResult, decision: Decision
    ) -> None:
        status = decision.status
        extra = {**send.ids, "message_id": rec.id}
        log.info("message %s %s to %s", rec.channel, decision.label, mask(rec.channel, rec.to), extra=extra)
        if result.provider_id and rec.channel in ("sms", "whatsapp"):
            await apply_parked(self.store, self.customers, self.webhooks, rec.id, result.provider_id)
        if rec.channel in ("sms", "whatsapp") and (status == "accepted" or decision.label == "in_doubt"):
            # In doubt too: the customer may have the SMS, and a reply to it should be understood.
            prompt = prompt_for(send, self.settings)
            if prompt is not None:
                await open_prompt(self.redis, self.settings, rec.to, prompt, rec.channel)
        if status in ("accepted", "failed", "unknown"):
            await self.tell(rec, status, result)
        elif status == "dead":
            await self.tell(rec, "dead", None)
        if status == "failed":
            await self._retire_contact(rec, result)
        elif status in ("accepted", "unknown"):
            await self._maybe_escalate(send, rec)  # unknown: an SMS if the app does not confirm it

    async def tell(self, rec: MessageRecord, status: str, result: SendResult | None) -> None:
        """The ``message.status`` webhook, through a Redis outage as long as the sending lease:
        the status is recorded already, and upstream must hear of it."""

        async def emit() -> None:
            provider_id = result.provider_id if result else None
            await tell_status(
                self.webhooks, rec, status, provider_id=provider_id, error_code=result.error_code if result else None
            )

        await outlasting(emit, patience=self.patience)

    async def tell_recorded(self, rec: MessageRecord) -> None:
        """Create the ``message.status`` webhook of every told status in the message's history.
        Their ids are derived from (message, status), so those already made are not made again;
        one a crash cut off between the status and its webhook is made now."""
        found: dict[str, Any] | None = await self.store.get_message(rec.id)
        if found is None:
            return
        for status in dict.fromkeys(h.get("status") for h in found.get("history", [])):
            if status in TOLD:
                told = SendResult(
                    "accepted", found.get("provider_id") or None, error_code=found.get("error_code") or None
                )
                await self.tell(rec, str(status), told)

    async def _retire_contact(self, rec: MessageRecord, result: SendResult) -> None:
        """A contact the provider says is dead is not tried again (the next channel is)."""
        if result.contact_invalid:
            reason = f"{result.error_code or ''} {result.reason or ''}".strip()
            if rec.channel == "push":
                await self.customers.remove_push_token(rec.customer_id, rec.to)
            else:
                await self.customers.mark_invalid(rec.customer_id, rec.channel, reason, rec.to)

    async def fall_back(self, send: Send, rec: MessageRecord, why: str, *, note: bool = True) -> None:
        """Send the same news on the next channel. Idempotent (message ids are deterministic),
        so a re-run that finds the message ``failed`` calls it again to finish a fallback a
        crash cut short."""
        if rec.channel == "push":
            current = await self.customers.get(rec.customer_id)
            if current is not None and current.contact("push"):
                return  # other devices of the customer still got (or get) the push
            send.customer = current or send.customer
        planned = next_channel(send.customer, send.used, self.settings.fallback, send.stopped)
        if not planned:
            if note:
                await self.store.note(rec.id, f"{why}; no other channel reaches the customer")
            return
        first = send.message_id(Spec(planned[0].channel, planned[0].address))
        if note:
            await self.store.note(rec.id, f"{why}; falling back to {planned[0].channel} ({first})")
        for p in planned:
            await self.redeliver(send, Spec(p.channel, p.address, via_fallback=True, fallback_of=rec.id))

    async def _maybe_escalate(self, send: Send, rec: MessageRecord) -> None:
        """A push the app has not confirmed within ``policy.escalate_after_minutes``: an SMS."""
        cfg = self.settings.policy
        minutes = cfg.escalate_after_minutes
        if rec.channel != "push" or minutes is None or send.milestone not in cfg.escalate_milestones:
            return
        addresses, _ = reachable(send.customer, "sms", send.stopped)
        if not addresses:
            return
        sms = Spec("sms", addresses[0], via_fallback=True, fallback_of=rec.id, reason="escalation")
        due_ms = int((self.scheduler.clock() + minutes * 60) * 1000)
        await self.scheduler.schedule(MessageJobKind.ESCALATE, send, sms, due_ms)

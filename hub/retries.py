"""A message's own job (``send_message``): held, retried, replayed or escalating messages whose
time has come, and the sweeper that queues again those whose job was lost.

The job re-checks everything from the start of the policy (hub.dispatch): a message held
overnight is dropped if the parcel was delivered meanwhile, a replay is not sent if it has
expired, and never if a provider already has it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from . import jobs, keys, metrics
from .dispatch import Dispatcher
from .jobs import MessageJob, MessageJobKind
from .message import Send, Spec, message_id
from .records import PENDING, Claimed, MessageRecord
from .whatsapp import blocked as whatsapp_blocked

__all__ = ["MessageJobs"]

log = logging.getLogger(__name__)
# The statuses a message waits in, and the kind of job that takes it on.
_WAITING = (
    ("deferred", MessageJobKind.DEFERRED),
    ("transient", MessageJobKind.RETRY),
    ("replaying", MessageJobKind.REPLAY),
)


class MessageJobs:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self.clock = dispatcher.clock

    async def run(self, source: str, event: dict[str, Any], raw_spec: dict[str, Any], due_ms: int, kind: str) -> str:
        """A held, retried, replayed or escalating message whose time has come; returns its status
        (or what the job found: ``confirmed``, ``rescheduled``, ``early``, ``gone``)."""
        spec = Spec.of(raw_spec)
        job_kind = MessageJobKind(kind)
        fields = await self.store.message_fields(message_id(source, event["event_id"], spec.channel, spec.address))
        status = fields.get("status")
        if spec.reason == "escalation" and status in (None, "deferred") and await self._push_confirmed(source, event):
            if status == "deferred":
                record = MessageRecord.from_fields(fields)
                if isinstance(await self.store.claim(record, "skipped", "the push was confirmed meanwhile"), Claimed):
                    metrics.MESSAGES.labels(record.channel, "skipped").inc()
            log.info("push confirmed in time; no SMS", extra={"message_id": spec.fallback_of})
            return "confirmed"
        if job_kind is MessageJobKind.ESCALATE:
            if status:
                return status  # the event already has this SMS (or another device's job made it)
        elif status == "sending":
            pass  # resolved below: a live send elsewhere, or one a dead worker left behind
        elif status is None or status not in PENDING:
            return status or "gone"
        elif job_kind is not MessageJobKind.REPLAY and int(fields.get("due_at") or 0) > due_ms:
            return "rescheduled"  # held again since; that later job owns it
        if job_kind is not MessageJobKind.REPLAY and self.clock() * 1000 < due_ms - 1000:
            # Early (clocks differ between machines): a job of its own for the rest of the wait.
            now_ms = int(self.clock() * 1000)
            job = MessageJob(source, event, asdict(spec), due_ms, job_kind)
            job_id = jobs.message_job_id(
                message_id(source, event["event_id"], spec.channel, spec.address), due_ms, now_ms
            )
            await self.dispatcher.scheduler.later(job, job_id=job_id, defer_by=max(0.0, (due_ms - now_ms) / 1000))
            return "early"
        send = await self._rebuild(source, event)
        if send is None:
            return "gone"
        if status == "sending":
            return await self.dispatcher.resolve_in_doubt(send.record(spec), send, spec)
        if job_kind is MessageJobKind.ESCALATE:
            await self.store.note(spec.fallback_of, "push not confirmed in time; escalating to SMS")
        return await self.dispatcher.deliver(send, spec, fresh=False)

    async def _rebuild(self, source: str, event: dict[str, Any]) -> Send | None:
        """What the event's messages share, as it is now (None: the customer is gone)."""
        d = self.dispatcher
        customer = await d.customers.get(event["customer"]["id"])
        delivery = await self.store.get_delivery(event["delivery"]["id"]) or {"id": event["delivery"]["id"]}
        if customer is None:
            return None
        stopped: frozenset[str] = frozenset()
        if customer.phone and await d.redis.exists(keys.sms_optout(self.store.optout_pepper, customer.phone)):
            stopped = frozenset({customer.phone})
        stopped |= await whatsapp_blocked(d.redis, d.settings, customer)
        session = await d.relay.for_delivery(delivery["id"]) if d.relay.cfg.pool else None
        contact = session["customer_proxy"] if session and session.get("status") == "open" else None
        send = d.context(source, event, customer, delivery, stopped, contact)
        send.used |= await self._channels_of_event(source, event, delivery["id"])
        return send

    async def _push_confirmed(self, source: str, event: dict[str, Any]) -> bool:
        """Whether the app confirmed any push of this event (on any of the customer's devices)."""
        listed = await self.store.list_messages(delivery_id=event["delivery"]["id"], customer_id=None, limit=1000)
        return any(
            m.get("event_id") == event["event_id"]
            and m.get("source") == source
            and m.get("channel") == "push"
            and m.get("status") in ("delivered", "read")
            for m in listed
        )

    async def _channels_of_event(self, source: str, event: dict[str, Any], delivery_id: str) -> set[str]:
        listed = await self.store.list_messages(delivery_id=delivery_id, customer_id=None, limit=1000)
        return {
            m["channel"]
            for m in listed
            if m.get("event_id") == event["event_id"] and m.get("source") == source and m.get("to")
        }

    async def sweep(self, *, grace: float = 60.0, limit: int = 500) -> int:
        """Queue again the waiting messages whose job was lost (a crash between recording and
        queueing, arq giving up on a job): deferred or transient ones overdue by ``grace``
        seconds, and replays requested that long ago. Returns how many were queued."""
        queued = 0
        for status, kind in _WAITING:
            before = (self.clock() if status != "replaying" else time.time()) - grace
            for mid in await self.store.overdue(status, int(before * 1000), limit):
                queued += await self._sweep_one(mid, status, kind)
        if queued:
            log.warning("sweeper queued %d waiting messages whose job was missing", queued)
        return queued

    async def _sweep_one(self, mid: str, status: str, kind: MessageJobKind) -> bool:
        fields = await self.store.message_fields(mid)
        if fields.get("status") != status or not fields.get("job"):
            return False
        payload = json.loads(fields["job"])
        due_ms = int(fields.get("due_at") or 0)
        original, again = jobs.message_job_id(mid, due_ms), jobs.message_job_id(mid, due_ms, "sweep")
        if await self.dispatcher.redis.exists(jobs.job_key(original), jobs.job_key(again)):
            return False  # its job is still queued (a backlog), not lost
        job = MessageJob(payload["source"], payload["event"], payload["spec"], due_ms, kind)
        return await self.dispatcher.scheduler.later(job, job_id=again)

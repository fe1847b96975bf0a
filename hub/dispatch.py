"""Sending one planned message under the delivery policy (see hub.policy), and its follow-ups.

``Dispatcher.deliver`` takes a message from planned to its outcome:

1. expired (time-to-live, or the ETA window it speaks of has ended)      -> ``expired``
2. it waited and a newer event made it pointless, or the customer opted
   out, was erased or changed the address meanwhile                      -> ``superseded`` / ``skipped``
3. quiet hours (by the milestone's urgency) or an open collapsing window -> ``deferred`` + a job
4. the provider sender's pace (shared through Redis): wait briefly, or reschedule
5. claim in the log (atomic, with the customer's hourly limit per channel; over it -> deferred)
6. render (once per event), send, record; then by outcome:
   - accepted: open the reply prompt; schedule a push-to-SMS escalation where configured;
   - permanent: retire the contact, send on the next channel of the customer's fallback order;
   - transient: a retry job with exponential backoff and jitter (Retry-After honoured), until
     ``worker.max_tries``, then ``dead`` with what a replay needs.

Messages that wait get a job of their own (``send_message``, id ``msg:{message_id}:{due_ms}``),
deferred by the time they wait; the job re-checks everything from step 1, so a message held
overnight is dropped if the parcel was delivered meanwhile. Every decision is a status change
with a reason in the message's history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from arq.constants import job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from channels import Channel, InDoubtPolicy, Outbound, SendResult, count_segments
from preferences import CustomerRecord, CustomerStore

from . import keys, metrics
from .config import QuietWindow, Settings
from .context import Formatter, build_context
from .links import Links
from .masking import mask
from .planner import next_channel, reachable
from .policy import customer_timezone, expires_at, obsoleted_by, quiet_due, quiet_window, spread_offset
from .relay import Relay
from .render import Rendered, Renderer, RenderFailure
from .schema import occurred_ms_of
from .status import apply_parked
from .store import FRESH, PENDING, HubStore, MessageRecord, now_iso
from .webhooks import Webhooks

__all__ = ["SEND_JOB", "Dispatcher", "Send", "SendInProgress", "Spec", "message_id", "replay_messages"]

log = logging.getLogger(__name__)

SEND_JOB = "send_message"
# Statuses upstream hears of (``message.status``): the dispatcher's outcomes and the provider's reports.
TOLD = frozenset({"accepted", "failed", "dead", "unknown", "expired", "sent", "delivered", "undelivered", "read"})
_STATUS = {"accepted": "accepted", "transient": "transient", "permanent": "failed"}
# Spec.reason of a message's retry after a send whose answer was lost: it asks the provider
# before sending again (see _reconcile).
IN_DOUBT = "in_doubt"
# Clock difference allowed between the hub and a provider when matching its record of a send.
RECONCILE_SKEW = 300.0
Enqueue = Callable[..., Awaitable[Any]]
T = TypeVar("T")


async def _outlasting(call: Callable[[], Awaitable[T]], *, patience: float = 10.0) -> T:
    """``call()``, tried again through a Redis outage of up to ``patience`` seconds. For what must
    be written after a provider call: the outcome is in hand and only Redis can lose it, which
    would leave the message ``sending`` and, after its lease, ``unknown``."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError):
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable while claiming or recording a send; trying again in %.2f s", delay)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


def _job_payload(send: Send, spec: Spec) -> str:
    """What a message's own job (a retry, a sweep, a replay) needs to run it again: kept on its record."""
    return json.dumps({"source": send.source, "event": send.event, "spec": asdict(spec)})


class SendInProgress(Exception):
    """A message is ``sending`` under another handler's lease; its job should run again in
    ``retry_in`` seconds, when the send has settled or the lease has run out."""

    def __init__(self, message_id: str, retry_in: float) -> None:
        super().__init__(f"message {message_id} is being sent elsewhere; look again in {retry_in:.0f} s")
        self.message_id = message_id
        self.retry_in = retry_in


def message_id(source: str, event_id: str, channel: str, address: str) -> str:
    digest = hashlib.sha256(f"{source}\x1f{event_id}\x1f{channel}\x1f{address}".encode()).hexdigest()
    return f"m_{digest[:24]}"


@dataclass(frozen=True)
class Spec:
    """One message to send (JSON-safe: it travels in jobs)."""

    channel: str
    address: str
    via_fallback: bool = False
    fallback_of: str = ""
    reason: str = ""  # "escalation": an SMS standing in for an unconfirmed push

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Spec:
        return cls(
            str(raw["channel"]),
            str(raw["address"]),
            bool(raw.get("via_fallback")),
            str(raw.get("fallback_of", "")),
            str(raw.get("reason", "")),
        )


@dataclass
class Send:
    """What every message of one event shares (built once per event, or per message job)."""

    source: str
    event: dict[str, Any]
    customer: CustomerRecord
    delivery: dict[str, Any]
    locale: str
    timezone: str
    quiet: QuietWindow | None
    expires: float | None
    stopped: frozenset[str]
    driver_contact: str | None = None
    used: set[str] = field(default_factory=set)  # channels this event already has messages on
    rendered: Rendered | None = None
    link: str = ""  # the tracking page's URL, once rendered
    render_error: str | None = None
    prompt: dict[str, Any] | None = None
    prompt_built: bool = False

    @property
    def milestone(self) -> str:
        return str(self.event["type"])

    @property
    def ids(self) -> dict[str, str]:
        return {"event_id": self.event["event_id"], "delivery_id": self.delivery["id"], "source": self.source}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class Dispatcher:
    """The per-message half of the worker's runtime (hub.pipeline.Runtime adds events)."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        channels: dict[str, Channel],
        *,
        enqueue: Enqueue | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
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
        self.enqueue = enqueue
        self.clock = clock
        self._pending: set[asyncio.Task[Any]] = set()  # writes outliving their job (_background)

    # -- context ------------------------------------------------------------------------------
    def context(
        self,
        source: str,
        event: dict[str, Any],
        customer: CustomerRecord,
        delivery: dict[str, Any],
        stopped: frozenset[str],
        driver_contact: str | None = None,
    ) -> Send:
        cfg, prefs = self.settings.policy, customer.prefs
        locale = self.renderer.resolve_locale(prefs.get("locale") or customer.locale or self.settings.default_locale)
        tz = customer_timezone(prefs, customer.timezone, customer.phone, cfg, self.settings.default_timezone)
        eta = event["delivery"].get("eta") or delivery.get("eta") or {}
        eta_end = occurred_ms_of(eta["end"]) / 1000 if eta.get("end") else None
        occurred = occurred_ms_of(event["occurred_at"]) / 1000
        return Send(
            source=source,
            event=event,
            customer=customer,
            delivery=delivery,
            locale=locale,
            timezone=tz,
            quiet=quiet_window(prefs, customer.phone, cfg),
            expires=expires_at(event["type"], occurred, eta_end, cfg),
            stopped=stopped,
            driver_contact=driver_contact,
        )

    def record_for(self, send: Send, spec: Spec) -> MessageRecord:
        event = send.event
        return MessageRecord(
            id=message_id(send.source, event["event_id"], spec.channel, spec.address),
            event_id=event["event_id"],
            source=send.source,
            delivery_id=send.delivery["id"],
            customer_id=send.customer.id,
            milestone=send.milestone,
            channel=spec.channel,
            to=spec.address,
            template=f"{send.locale}/{send.milestone}",
            locale=send.locale,
            via_fallback=spec.via_fallback,
            fallback_of=spec.fallback_of,
        )

    # -- the policy ---------------------------------------------------------------------------
    async def deliver(self, send: Send, spec: Spec, *, fresh: bool) -> str:
        """Take one message as far as it can go now; returns its status. ``fresh``: planned by
        the event being processed (not a message that waited)."""
        cfg = self.settings.policy
        rec = self.record_for(send, spec)
        send.used.add(spec.channel)
        now = self.clock()
        if send.expires is not None and now >= send.expires:
            return await self._drop(send, spec, rec, "expired", f"its time to live ended at {_iso(send.expires)}")
        if not fresh:
            occurred = occurred_ms_of(send.event["occurred_at"])
            newer = await self.store.newer_events(rec.delivery_id, occurred, int(send.event.get("seq") or 0))
            replaced = obsoleted_by(send.milestone, newer, cfg)
            if replaced:
                return await self._drop(
                    send, spec, rec, "superseded", f"a newer {replaced} event arrived while it waited"
                )
        # Erasure, opt-outs, STOP and a changed address are judged by the send gate, in the claim
        # (keys.CLAIM_MESSAGE), atomically, on every path.
        due, reason = await self._hold(send, spec, rec, fresh, now)
        if due is not None:
            return await self._defer(send, rec, spec, due, reason)
        rate = cfg.sender_rate.get(spec.channel, 0.0)  # type: ignore[call-overload]
        if rate > 0:
            wait = await self.store.pace(spec.channel, self._sender(spec.channel), rate, cfg.sender_max_wait)
            if wait < 0:
                return await self._defer(send, rec, spec, now - wait, "the provider sender is at its rate limit")
            if wait > 0:
                await asyncio.sleep(wait)
        limit = int(cfg.per_customer_hour.get(spec.channel, 0))  # type: ignore[call-overload]
        # Render (and store the tracking link) before the claim: between the claim and the
        # provider call nothing touches Redis, so an outage there cannot strand a claimed
        # message that was never sent.
        await self._render(send)
        # Asked again through a short Redis outage: with its token, a claim whose answer was lost
        # is still this handler's (without, the message would be left "sending", then "unknown").
        token = secrets.token_hex(8)
        allowed = PENDING if not fresh else FRESH
        try:
            claim = await _outlasting(
                lambda: self.store.claim(
                    rec, hourly_limit=limit, clock_ms=int(now * 1000), allowed=allowed, token=token
                ),
                patience=self.settings.worker.job_timeout / 4,
            )
        except BaseException:
            # Redis outlasted the patience, or the job was cancelled: the claim may have landed
            # with its answer lost. Nothing was sent, so give it back once Redis answers; left
            # alone it would stay "sending" and end "unknown" without ever being sent.
            self._release_later(send, spec, rec, token)
            raise
        if claim.startswith("gated:"):
            metrics.MESSAGES.labels(rec.channel, "skipped").inc()
            log.info("message %s skipped: %s", rec.channel, claim[6:], extra={**send.ids, "message_id": rec.id})
            return "skipped"
        if claim.startswith("limited:"):
            reason = f"more than {limit} {spec.channel} messages to this customer in an hour"
            return await self._defer(send, rec, spec, int(claim.split(":", 1)[1]) / 1000, reason)
        if claim == "sending":
            return await self.resolve_in_doubt(rec, send, spec)
        if claim == "failed":
            await self.fall_back(send, rec, "", note=False)  # finish a fallback a crash may have cut short
        if claim in TOLD:
            await self._tell_recorded(rec)  # a crash may have cut off the status webhooks
        if claim != "claimed":
            return claim
        metrics.MESSAGES.labels(rec.channel, "sending").inc()
        return await self._send(send, spec, rec, token)

    async def _durably(self, work: Awaitable[T], *, inline: float) -> T:
        """Run ``work`` in a task of its own and wait up to ``inline`` seconds for it; past that
        (or if this job is cancelled) it goes on in the background and this raises."""
        task = self._background(work)
        try:
            return await asyncio.wait_for(asyncio.shield(task), inline)
        except TimeoutError as e:
            raise RedisConnectionError("Redis unreachable; the write goes on in the background") from e

    def _background(self, work: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a background write failed: %r", task.exception())

    def _release_later(self, send: Send, spec: Spec, rec: MessageRecord, token: str) -> None:
        self._background(self._release(send, spec, rec, token))

    async def _release(self, send: Send, spec: Spec, rec: MessageRecord, token: str) -> None:
        """Give back a claim that never reached the provider, trying through a Redis outage for
        as long as the sending lease (after it, another handler would mark the message unknown),
        and queue the message's own job to send it (the sweeper's backup: it is indexed as due)."""
        detail = "claim given back: Redis failed before the provider call; a retry sends it"
        job = _job_payload(send, spec)
        patience = self.settings.worker.job_timeout + 5
        now_ms = int(self.clock() * 1000)
        try:
            if await _outlasting(lambda: self.store.release(rec, token, detail, job, now_ms), patience=patience):
                log.info("message %s claim given back", rec.channel, extra={"message_id": rec.id})
                metrics.MESSAGES.labels(rec.channel, "released").inc()
                await _outlasting(lambda: self.schedule("retry", send, spec, now_ms, ":released"), patience=patience)
        except (RedisConnectionError, RedisTimeoutError) as e:
            log.warning("could not give back a claim (%s); it ends unknown", e, extra={"message_id": rec.id})

    async def settle(self) -> None:
        """Wait for the writes outliving their jobs: claims given back, outcomes recorded."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def resolve_in_doubt(self, rec: MessageRecord, send: Send | None = None, spec: Spec | None = None) -> str:
        """A message found ``sending``: another handler is sending it now, or one that died left it
        so. While the sending lease runs this raises ``SendInProgress`` (the job tries again when
        the lease ends). Past it, the provider call was cut off and its outcome is in doubt: an
        SMS (a channel that reconciles, given the ``send`` and ``spec`` its lookup needs) is looked
        up at the provider (``_reconcile_cut_off``); any other message is marked ``unknown`` and
        never resent."""
        fields = await self.store.message_fields(rec.id)
        if fields.get("status") != "sending":
            return fields.get("status") or "gone"
        lease_ms = (self.settings.worker.job_timeout + 5) * 1000
        claimed_ms = int(fields.get("claimed_ms") or 0)
        held_ms = time.time() * 1000 - claimed_ms
        if held_ms < lease_ms:
            # Never leave it: the handler may be dead (its job cancelled by the timeout, its
            # process killed), and nothing else would look at this message again.
            raise SendInProgress(rec.id, (lease_ms - held_ms) / 1000 + 1)
        metrics.MESSAGES.labels(rec.channel, "in_doubt").inc()
        if send is not None and spec is not None and self.channels[rec.channel].in_doubt is InDoubtPolicy.RECONCILE:
            rendered = await self._render(send)
            if rendered is not None:
                outbound = self._outbound(rec, rendered, send.link)
                return await self._reconcile_cut_off(send, spec, rec, fields, claimed_ms, outbound)
        await self.store.record(rec.id, "unknown", error="a worker stopped during the provider call; not resent")
        metrics.MESSAGES.labels(rec.channel, "unknown").inc()
        await self._status_webhook(rec, "unknown", None)
        return "unknown"

    async def _reconcile_cut_off(
        self, send: Send, spec: Spec, rec: MessageRecord, fields: dict[str, str], claimed_ms: int, outbound: Outbound
    ) -> str:
        """Look up a message whose provider call a dead handler's crash cut off, and record what
        the lookup says under that handler's claim (its token: the claim's own write, guarded like
        any outcome, so of two handlers resolving the message one records it): found, ``accepted``
        with the provider's id, as any send (parked callbacks, the status webhook, the reply
        prompt); otherwise in doubt, as a send whose answer was lost: a retry that looks it up
        again before any send (the whole list read and none) or later (the lookup failed),
        ``unknown`` once ``worker.max_tries`` tries have ended in doubt. This handler holds no
        claim of its own, so it sends nothing itself."""
        why = "a worker stopped during the provider call"
        # No copy was made before the claim; an earlier doubt's time, if any, is older still.
        doubt_ms = int(fields.get("doubt_ms") or claimed_ms)
        found = await self._look_up(send, rec, outbound, doubt_ms / 1000 - RECONCILE_SKEW, "cut off by a crash")
        if found.outcome == "accepted":
            result = found
        elif found.outcome == "transient":
            result = SendResult.in_doubt(f"{why}; the provider has no such message ({found.reason})")
        else:
            result = SendResult.in_doubt(f"{why}; {found.reason or 'lookup failed'}", code=found.error_code)
        token = fields.get("claim", "")
        return await self._settled(
            send, replace(spec, reason=IN_DOUBT), rec, token, result, {"doubt_ms": str(doubt_ms)}
        )

    async def _hold(
        self, send: Send, spec: Spec, rec: MessageRecord, fresh: bool, now: float
    ) -> tuple[float | None, str]:
        """Until when quiet hours or a collapsing window hold the message (None: send now)."""
        cfg = self.settings.policy
        due: float | None = None
        reason = ""
        end = quiet_due(send.milestone, spec.channel, now, send.timezone, send.quiet, cfg)
        if end is not None:
            due = end + spread_offset(rec.id, cfg.quiet_spread_minutes)
            local = datetime.fromtimestamp(end, ZoneInfo(send.timezone))
            reason = f"quiet hours until {local.strftime('%H:%M')} {send.timezone}"
        if fresh and send.milestone in cfg.collapsible and cfg.collapse_seconds > 0:
            length = int(cfg.collapse_seconds * 1000)
            window_end = (
                await self.store.collapse_window(rec.delivery_id, send.milestone, int(now * 1000) + length, length)
                / 1000
            )
            if window_end > now and (due is None or window_end > due):
                due, reason = window_end, f"collapsing {send.milestone} updates until {_iso(window_end)}"
        if due is not None and due <= now:
            return None, ""  # a window that has just ended: send now
        return due, reason

    async def _drop(self, send: Send, spec: Spec, rec: MessageRecord, status: str, detail: str) -> str:
        claim = await self.store.claim(rec, status, detail)
        if claim == "sending":  # a call cut off by a crash: resolved, not left sending for good
            return await self.resolve_in_doubt(rec, send, spec)
        if claim != "claimed":
            return claim
        metrics.MESSAGES.labels(rec.channel, status).inc()
        log.info("message %s %s: %s", rec.channel, status, detail, extra={**send.ids, "message_id": rec.id})
        if status == "expired":
            await self._status_webhook(rec, status, None)
        return status

    async def _defer(self, send: Send, rec: MessageRecord, spec: Spec, due: float, reason: str) -> str:
        if send.expires is not None and due >= send.expires:
            detail = f"{reason}, but it expires at {_iso(send.expires)}"
            return await self._drop(send, spec, rec, "expired", detail)
        due_ms = int(due * 1000)
        job = _job_payload(send, spec)
        claim = await self.store.claim(rec, "deferred", reason, due_ms=due_ms, job=job)
        if claim == "sending":  # a call cut off by a crash: resolved, not left sending for good
            return await self.resolve_in_doubt(rec, send, spec)
        if claim != "claimed":
            return claim
        metrics.MESSAGES.labels(rec.channel, "deferred").inc()
        # A crash before this leaves a deferred message without a job: the sweeper finds it.
        await self.schedule("deferred", send, spec, due_ms)
        log.info(
            "message %s deferred to %s: %s", rec.channel, _iso(due), reason, extra={**send.ids, "message_id": rec.id}
        )
        return "deferred"

    async def schedule(self, kind: str, send: Send, spec: Spec, due_ms: int, suffix: str = "") -> None:
        """A job of the message's own at ``due_ms`` (policy clock), deferred by the time left."""
        if self.enqueue is None:
            raise RuntimeError("this runtime cannot schedule jobs (no queue)")
        rec_id = message_id(send.source, send.event["event_id"], spec.channel, spec.address)
        delay = max(0.0, due_ms / 1000 - self.clock())
        await self.enqueue(
            SEND_JOB,
            send.source,
            send.event,
            asdict(spec),
            due_ms,
            kind,
            _job_id=f"msg:{rec_id}:{due_ms}{suffix}",
            _defer_by=delay,
        )

    def _sender(self, channel: str) -> str:
        if channel == "sms":
            tw = self.settings.twilio
            return tw.messaging_service_sid or tw.from_number or "default"
        if channel == "email":
            return self.settings.smtp.username or self.settings.smtp.from_address
        return self.settings.fcm.project_id

    # -- sending ------------------------------------------------------------------------------
    async def _send(self, send: Send, spec: Spec, rec: MessageRecord, token: str) -> str:
        rendered = await self._render(send)
        if rendered is None:
            await self.store.record(rec.id, "failed", error=f"rendering: {send.render_error}")
            metrics.MESSAGES.labels(rec.channel, "failed").inc()
            return "failed"
        outbound = self._outbound(rec, rendered, send.link)
        channel = self.channels[rec.channel]
        extra: dict[str, str] = {}
        if rec.channel == "sms":
            info = count_segments(outbound.text)
            extra = {"segments": str(info.segments), "encoding": info.encoding}
        if spec.reason == IN_DOUBT:
            # An earlier try's answer was lost: the provider may have the message already.
            found = await self._reconcile(send, spec, rec, token, outbound)
            if found is not None:
                return await self._settled(send, spec, rec, token, found, extra)
            spec = replace(spec, reason="")  # it has not: from here on, a plain retry
        started = time.perf_counter()
        sent_ms = int(time.time() * 1000)
        try:
            result = await channel.send(outbound)
        except Exception as e:  # an adapter bug must not lose the message: retry it
            log.exception("channel %s raised", rec.channel, extra={**send.ids, "message_id": rec.id})
            result = SendResult.transient(f"adapter error: {type(e).__name__}")
        metrics.PROVIDER_SECONDS.labels(rec.channel, result.outcome).observe(time.perf_counter() - started)
        if result.outcome == "in_doubt":
            metrics.MESSAGES.labels(rec.channel, "in_doubt").inc()
            extra["doubt_ms"] = str(sent_ms)  # the provider made no copy before this
        return await self._settled(send, spec, rec, token, result, extra)

    async def _settled(
        self, send: Send, spec: Spec, rec: MessageRecord, token: str, result: SendResult, extra: dict[str, str]
    ) -> str:
        """Record a provider call's outcome and act on it; returns the message's status."""
        status = _STATUS.get(result.outcome, "in_doubt")
        if status == "in_doubt" and self.channels[rec.channel].in_doubt is not InDoubtPolicy.RECONCILE:
            status = "unknown"  # no lookup on this channel: never sent again
        elif status == "in_doubt":
            spec = replace(spec, reason=IN_DOUBT)  # its retry asks the provider before sending
        # The outcome is in hand and only Redis can lose it now. It is recorded, with what follows
        # from it (parked callbacks, the reply prompt, the status webhook, a retired contact), by
        # a task of its own that outlives this job (a Redis outage longer than the job, the job's
        # cancellation) for as long as the sending lease: the message ends with its real status,
        # not "unknown", and upstream hears of it.
        status, due_ms = await self._durably(
            self._conclude(send, spec, rec, result, status, extra, token),
            inline=self.settings.worker.job_timeout / 2,
        )
        if status == "failed":
            # Not in the durable part (it sends on other channels); a re-run finishes it.
            await self.fall_back(send, rec, f"{rec.channel} failed permanently")
        elif status == "transient" and due_ms is not None:
            await self.schedule("retry", send, spec, due_ms)  # lost in a crash here: the sweeper finds it
        return status

    async def _reconcile(
        self, send: Send, spec: Spec, rec: MessageRecord, token: str, outbound: Outbound
    ) -> SendResult | None:
        """Ask the provider whether it has the message a try whose answer was lost may have left
        there: ``accepted`` (it has: record it, send nothing) or ``in_doubt`` (it cannot tell:
        ask again later), or ``None``: it has not, send it."""
        fields = await self._before_provider(send, spec, rec, token, lambda: self.store.message_fields(rec.id))
        since = int(fields.get("doubt_ms") or 0) / 1000 - RECONCILE_SKEW
        found = await self._look_up(send, rec, outbound, since, "in doubt")
        if found.outcome == "accepted":
            return found
        if found.outcome != "transient":
            return SendResult.in_doubt(found.reason or "lookup failed", code=found.error_code)
        note = f"the provider has no such message ({found.reason}); sending it again"
        await self._before_provider(send, spec, rec, token, lambda: self.store.note(rec.id, note))
        return None

    async def _before_provider(
        self, send: Send, spec: Spec, rec: MessageRecord, token: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """A Redis call between the claim and the provider call, asked again through a short
        outage; if Redis stays away (or the job is cancelled), the claim is given back, as
        ``deliver`` does when its claim fails, and a retry with the same ``spec`` follows."""
        try:
            return await _outlasting(call, patience=self.settings.worker.job_timeout / 4)
        except BaseException:
            self._release_later(send, spec, rec, token)
            raise

    def _reconcile_after(self, channel: str) -> float:
        """Seconds before the provider is asked about a send whose answer was lost: as long as
        the client waited, so a request the provider was still working on has ended."""
        timeouts = {"sms": self.settings.twilio.timeout, "email": self.settings.smtp.timeout}
        return float(timeouts.get(channel, self.settings.fcm.timeout))

    async def _conclude(
        self,
        send: Send,
        spec: Spec,
        rec: MessageRecord,
        result: SendResult,
        status: str,
        extra: dict[str, str],
        token: str,
    ) -> tuple[str, int | None]:
        """Record a provider call's outcome under the handler's claim, through Redis outages as long
        as the sending lease, and do what follows from it at once (see ``_settled``). Returns the
        status and, for a retry, when it is due; when the claim is no longer this handler's, the
        status found instead, and nothing follows.

        ``status`` ``in_doubt`` (the answer lost, the channel reconciles) is recorded as a retry
        (``transient``, with ``spec`` asking the provider first) logged ``in_doubt`` in the
        history, or ``unknown`` once ``worker.max_tries`` tries (the send and the lookups) have
        ended in doubt; ``unknown`` is never sent again."""
        patience = self.settings.worker.job_timeout + 5
        due_ms = None
        error = result.reason
        logged: tuple[str, str] | None = None  # a history entry other than the status's own
        if status in ("transient", "in_doubt"):
            # Decided before anything is recorded, while this handler still holds the claim: a
            # retry (with its job payload, for the sweeper) or the dead letter, in one write.
            fields = await _outlasting(lambda: self.store.message_fields(rec.id), patience=patience)
            attempts = int(fields.get("attempts", "1"))
            extra["job"] = _job_payload(send, spec)
            if status == "in_doubt":
                extra["doubt_ms"] = fields.get("doubt_ms") or extra.get("doubt_ms", "0")  # the first
                # Its own count: transient failures before the doubt do not shorten the lookups.
                doubts = int(fields.get("doubts") or 0) + 1
                extra["doubts"] = str(doubts)
            if status == "in_doubt" and doubts >= self.settings.worker.max_tries:
                del extra["job"]
                status, error = "unknown", f"still in doubt after {doubts} tries ({result.reason}); not sent again"
            elif status == "in_doubt":
                wait = max(self._backoff(attempts, None), self._reconcile_after(rec.channel))
                due_ms = int((self.clock() + wait) * 1000)
                status = "transient"
                logged = ("in_doubt", f"{result.reason}; the provider may have it: asking it before sending again")
            elif attempts >= self.settings.worker.max_tries:
                status, error = "dead", f"gave up after {attempts} tries: {result.reason}"
            else:
                due_ms = int((self.clock() + self._backoff(attempts, result.retry_after)) * 1000)
        elif status == "unknown":
            error = f"{result.reason}; the provider may have it and cannot be asked: not sent again"
        elif status == "accepted" and spec.reason == IN_DOUBT:
            logged = ("accepted", "found at the provider after its answer was lost; not sent again")
        at = now_iso()

        def write() -> Awaitable[str]:
            outcome: dict[str, Any] = {
                "at": at,
                "provider_id": result.provider_id,
                "error": error,
                "error_code": result.error_code,
                "extra": extra or None,
                "due_ms": due_ms,
            }
            return self.store.settle(rec.id, token, status, logged=logged, **outcome)

        found = await _outlasting(write, patience=patience)
        label = logged[0] if logged else status
        if found != "done":
            log.warning(
                "message %s outcome %s not recorded: the message is %s now (its claim ended)",
                rec.channel,
                label,
                found,
                extra={**send.ids, "message_id": rec.id},
            )
            return found, None
        if label != "in_doubt":  # counted once, when the provider call ended so (_send)
            metrics.MESSAGES.labels(rec.channel, status).inc()
        if label == "transient":
            metrics.MESSAGE_RETRIES.labels(rec.channel).inc()
        elif status == "dead":
            metrics.DEAD_LETTERS.labels("message").inc()
        log.info(
            "message %s %s to %s",
            rec.channel,
            label,
            mask(rec.channel, rec.to),
            extra={**send.ids, "message_id": rec.id},
        )
        if result.provider_id and rec.channel == "sms":
            await apply_parked(self.store, self.customers, self.webhooks, rec.id, result.provider_id)
        if rec.channel == "sms" and (status == "accepted" or label == "in_doubt"):
            # In doubt too: the customer may have the SMS, and a reply to it should be understood.
            prompt = self._prompt(send)
            if prompt is not None:
                await self._open_prompt(rec.to, prompt)
        if status == "accepted":
            await self._status_webhook(rec, status, result)
            await self._maybe_escalate(send, spec, rec)
        elif status == "failed":
            await self._status_webhook(rec, status, result)
            await self._retire_contact(rec, result)
        elif status == "dead":
            await self._status_webhook(rec, "dead", None)
        elif status == "unknown":
            await self._status_webhook(rec, "unknown", result)
            await self._maybe_escalate(send, spec, rec)  # a push: an SMS if the app does not confirm it
        return status, due_ms

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
        first = self.record_for(send, Spec(planned[0].channel, planned[0].address))
        if note:
            await self.store.note(rec.id, f"{why}; falling back to {planned[0].channel} ({first.id})")
        for p in planned:
            await self.deliver(send, Spec(p.channel, p.address, via_fallback=True, fallback_of=rec.id), fresh=True)

    async def _maybe_escalate(self, send: Send, spec: Spec, rec: MessageRecord) -> None:
        cfg = self.settings.policy
        minutes = cfg.escalate_after_minutes
        if rec.channel != "push" or minutes is None or send.milestone not in cfg.escalate_milestones:
            return
        addresses, _ = reachable(send.customer, "sms", send.stopped)
        if not addresses:
            return
        sms = Spec("sms", addresses[0], via_fallback=True, fallback_of=rec.id, reason="escalation")
        await self.schedule("escalate", send, sms, int((self.clock() + minutes * 60) * 1000))

    async def _render(self, send: Send) -> Rendered | None:
        if send.rendered is not None or send.render_error is not None:
            return send.rendered
        delivery_id, customer_id, ttl = send.delivery["id"], send.customer.id, self.settings.tracking.link_days * 86_400
        candidates = self.links.link_ids(delivery_id, customer_id)
        link_id = await self.store.ensure_link(candidates, delivery_id, customer_id, ttl)
        send.link = self.links.tracking_url(link_id) if link_id else ""
        try:
            context = build_context(
                event=send.event,
                delivery=send.delivery,
                customer_name=send.customer.name,
                locale=send.locale,
                timezone=send.timezone,
                sender=self.settings.sender.model_dump(),
                link=send.link,
                unsubscribe_url=self.links.unsubscribe_url(send.customer.id),
                driver_contact=send.driver_contact,
            )
            send.rendered = self.renderer.render(send.milestone, send.locale, context)
        except (RenderFailure, ValueError, OverflowError, KeyError) as e:
            # Retrying cannot fix a template or data problem: the message fails.
            log.error("rendering failed: %s", e, extra=send.ids)
            send.render_error = str(e)
        return send.rendered

    def _prompt(self, send: Send) -> dict[str, Any] | None:
        if not send.prompt_built:
            send.prompt_built = True
            try:
                send.prompt = self._build_prompt(send)
            except (ValueError, OverflowError, KeyError):
                log.exception("could not build the reply prompt; replies will get the options", extra=send.ids)
        return send.prompt

    def _build_prompt(self, send: Send) -> dict[str, Any] | None:
        """What an SMS for this milestone invites the customer to answer (see hub.conversation)."""
        conv = self.settings.conversation
        now = time.time()
        milestone, event = send.milestone, send.event
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
        fmt = Formatter(send.locale, send.timezone)
        driver = send.delivery.get("driver") or event.get("driver") or {}
        return {
            "prompt": kind,
            "delivery_id": send.delivery.get("id") or event["delivery"]["id"],
            "customer_id": event["customer"]["id"],
            "source": send.source,
            "locale": send.locale,
            "timezone": send.timezone,
            "driver_id": driver.get("id"),
            "slots": [
                {"n": n, "id": s["id"], "start": s["start"], "end": s["end"], "label": fmt.slot(s["start"], s["end"])}
                for n, s in enumerate(slots, start=1)
            ]
            if kind == "reschedule"
            else [],
            "expires_at": expires,
        }

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

    async def _look_up(self, send: Send, rec: MessageRecord, outbound: Outbound, since: float, why: str) -> SendResult:
        """Ask the provider for a message sent since ``since`` (unix s): ``accepted`` (counted as
        reconciled), ``transient`` (it has not), or ``in_doubt`` (it cannot tell, an adapter bug
        included: never a blind resend)."""
        try:
            found = await self.channels[rec.channel].reconcile(outbound, since)
        except Exception as e:
            log.exception("channel %s reconcile raised", rec.channel, extra={**send.ids, "message_id": rec.id})
            found = SendResult.in_doubt(f"lookup error: {type(e).__name__}")
        log.info(
            "message %s %s, looked up: %s", rec.channel, why, found.outcome, extra={**send.ids, "message_id": rec.id}
        )
        if found.outcome == "accepted":
            metrics.MESSAGES.labels(rec.channel, "reconciled").inc()
        return found

    async def _tell_recorded(self, rec: MessageRecord) -> None:
        """Create the ``message.status`` webhook of every told status in the message's history.
        Their ids are derived from (message, status), so those already made are not made again;
        one a crash cut off between the status and its webhook is made now."""
        found = await self.store.get_message(rec.id)
        if found is None:
            return
        for status in dict.fromkeys(h.get("status") for h in found.get("history", [])):
            if status in TOLD:
                told = SendResult(
                    "accepted", found.get("provider_id") or None, error_code=found.get("error_code") or None
                )
                await self._status_webhook(rec, str(status), told)

    async def _status_webhook(self, rec: MessageRecord, status: str, result: SendResult | None) -> None:
        # Through a Redis outage as long as the sending lease: the status is recorded already, and
        # upstream must hear of it.
        await _outlasting(lambda: self._emit_status(rec, status, result), patience=self.settings.worker.job_timeout + 5)

    async def _emit_status(self, rec: MessageRecord, status: str, result: SendResult | None) -> None:
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

    def _outbound(self, rec: MessageRecord, rendered: Rendered, link: str = "") -> Outbound:
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

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        base: float = self.settings.worker.retry_base_delay * (2 ** (attempt - 1))
        delay = min(base, self.settings.worker.retry_max_delay) * (0.5 + random.random() / 2)  # jitter, not a secret
        return max(delay, retry_after or 0.0)

    # -- a message's own job --------------------------------------------------------------------
    async def run_job(
        self, source: str, event: dict[str, Any], raw_spec: dict[str, Any], due_ms: int, kind: str
    ) -> str:
        """A held, retried, replayed or escalating message whose time has come."""
        spec = Spec.of(raw_spec)
        rec_id = message_id(source, event["event_id"], spec.channel, spec.address)
        fields = await self.store.message_fields(rec_id)
        status = fields.get("status")
        waiting = spec.reason == "escalation" and status in (None, "deferred")
        if waiting and await self._push_confirmed(source, event):
            if status == "deferred":
                record = MessageRecord.from_fields(fields)
                if await self.store.claim(record, "skipped", "the push was confirmed meanwhile") == "claimed":
                    metrics.MESSAGES.labels(record.channel, "skipped").inc()
            log.info("push confirmed in time; no SMS", extra={"message_id": spec.fallback_of})
            return "confirmed"
        if kind == "escalate":
            if status:
                return status  # the event already has this SMS (or another device's job made it)
        elif status == "sending":
            pass  # resolved below: a live send elsewhere, or one a dead worker left behind
        elif status is None or f",{status}," not in PENDING:
            return status or "gone"
        elif kind != "replay" and int(fields.get("due_at") or 0) > due_ms:
            return "rescheduled"  # held again since; that later job owns it
        if kind != "replay" and self.clock() * 1000 < due_ms - 1000:  # early (clocks differ between machines)
            send_ms = int(self.clock() * 1000)
            await self._reschedule_early(source, event, spec, due_ms, kind, send_ms)
            return "early"
        customer = await self.customers.get(event["customer"]["id"])
        delivery = await self.store.get_delivery(event["delivery"]["id"]) or {"id": event["delivery"]["id"]}
        if customer is None:
            return "gone"
        stopped: frozenset[str] = frozenset()
        if customer.phone and await self.redis.exists(keys.sms_optout(self.store.optout_pepper, customer.phone)):
            stopped = frozenset({customer.phone})
        session = await self.relay.for_delivery(delivery["id"]) if self.relay.cfg.pool else None
        contact = session["customer_proxy"] if session and session.get("status") == "open" else None
        send = self.context(source, event, customer, delivery, stopped, contact)
        send.used |= await self._channels_of_event(source, event, delivery["id"])
        if status == "sending":
            return await self.resolve_in_doubt(self.record_for(send, spec), send, spec)
        if kind == "escalate":
            await self.store.note(spec.fallback_of, "push not confirmed in time; escalating to SMS")
        return await self.deliver(send, spec, fresh=False)

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

    async def sweep(self, *, grace: float = 60.0, limit: int = 500) -> int:
        """Queue again the waiting messages whose job was lost (a crash between recording and
        queueing, arq giving up on a job): deferred or transient ones overdue by ``grace``
        seconds, and replays requested that long ago. Returns how many were queued."""
        queued = 0
        for status, kind in (("deferred", "deferred"), ("transient", "retry"), ("replaying", "replay")):
            before = (self.clock() if status != "replaying" else time.time()) - grace
            for mid in await self.store.overdue(status, int(before * 1000), limit):
                fields = await self.store.message_fields(mid)
                if fields.get("status") != status or not fields.get("job"):
                    continue
                payload = json.loads(fields["job"])
                due_ms = int(fields.get("due_at") or 0)
                original, again = f"msg:{mid}:{due_ms}", f"msg:{mid}:{due_ms}:sweep"
                if await self.redis.exists(job_key_prefix + original, job_key_prefix + again):
                    continue  # its job is still queued (a backlog), not lost
                assert self.enqueue is not None
                job = await self.enqueue(
                    SEND_JOB,
                    payload["source"],
                    payload["event"],
                    payload["spec"],
                    due_ms,
                    kind,
                    _job_id=again,
                )
                queued += job is not None
        if queued:
            log.warning("sweeper queued %d waiting messages whose job was missing", queued)
        return queued

    async def _reschedule_early(
        self, source: str, event: dict[str, Any], spec: Spec, due_ms: int, kind: str, now_ms: int
    ) -> None:
        assert self.enqueue is not None
        rec_id = message_id(source, event["event_id"], spec.channel, spec.address)
        await self.enqueue(
            SEND_JOB,
            source,
            event,
            asdict(spec),
            due_ms,
            kind,
            _job_id=f"msg:{rec_id}:{due_ms}:{now_ms}",
            _defer_by=max(0.0, (due_ms - now_ms) / 1000),
        )

    async def _channels_of_event(self, source: str, event: dict[str, Any], delivery_id: str) -> set[str]:
        listed = await self.store.list_messages(delivery_id=delivery_id, customer_id=None, limit=1000)
        return {
            m["channel"]
            for m in listed
            if m.get("event_id") == event["event_id"] and m.get("source") == source and m.get("to")
        }


async def replay_messages(redis: Redis, settings: Settings, ids: list[str]) -> list[str]:
    """Send dead-lettered messages again; returns the ids queued. Only a message still ``dead``
    is queued (twice asked, once queued), and its job runs the whole policy again: it is not sent
    if it has expired or was superseded meanwhile, and never if a provider already has it."""
    from arq.constants import job_key_prefix
    from arq.jobs import serialize_job

    from .worker import job_serializer

    store = HubStore(redis, settings)
    queued = []
    for mid in ids:
        job = await redis.hget(keys.message(mid), "job")
        if not job or not await store.replay(mid):
            continue
        payload = json.loads(job)
        now_ms = int(time.time() * 1000)
        job_id = f"msg:{mid}:replay:{now_ms}"
        args = (payload["source"], payload["event"], payload["spec"], now_ms, "replay")
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(
                job_key_prefix + job_id,
                serialize_job(SEND_JOB, args, {}, None, now_ms, serializer=job_serializer),
                px=settings.retention.message_log_days * 86_400_000,
            )
            pipe.zadd(settings.worker.queue_name, {job_id: now_ms})
            await pipe.execute()
        queued.append(mid)
    return queued

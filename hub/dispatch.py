"""Sending one planned message under the delivery policy (see hub.policy): the state machine.

``Dispatcher.deliver`` takes a message from planned to its outcome:

1. expired (time-to-live, or the ETA window it speaks of has ended)      -> ``expired``
2. it waited and a newer event made it pointless                         -> ``superseded``
3. quiet hours (by the milestone's urgency) or an open collapsing window -> ``deferred`` + a job
4. the provider sender's pace (shared through Redis): wait briefly, or reschedule
5. claim in the log (atomic, with the send gate: erasure, opt-outs, STOP, a changed address ->
   ``skipped``; and the customer's hourly limit per channel -> ``deferred``)
6. render (once per event), send; what follows from the outcome is hub.outcomes'.

Messages that wait get a job of their own (hub.message.Scheduler); hub.retries runs it. Every
decision is a status change with a reason in the message's history.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from channels import Channel, InDoubtPolicy, Outbound, SendResult, count_segments
from preferences import CustomerRecord, CustomerStore

from . import metrics
from .compose import Composer
from .config import Settings
from .durable import Background, outlasting
from .jobs import Enqueue, MessageJobKind
from .links import Links
from .message import IN_DOUBT, Scheduler, Send, SendInProgress, Spec, iso, job_payload
from .outcomes import Outcomes
from .policy import hourly_limit, obsoleted_by, quiet_due, spread_offset
from .providers import sender_id
from .records import FRESH, PENDING, TOLD, Claim, Found, Gated, Limited, MessageRecord
from .redis_conn import replicated
from .relay import Relay
from .render import Renderer
from .schema import occurred_ms_of
from .store import HubStore
from .webhooks import Webhooks
from .whatsapp import Windows, outbound_for

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

# How a provider call's outcome is recorded (in doubt: by the channel's InDoubtPolicy).
_STATUS = {"accepted": "accepted", "transient": "transient", "permanent": "failed"}
# Clock difference allowed between the hub and a provider when matching its record of a send.
RECONCILE_SKEW = 300.0
T = TypeVar("T")


class Dispatcher:
    """The per-message part of the worker's runtime (hub.pipeline.Runtime holds one)."""

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
        self.webhooks = Webhooks(redis, settings, direct=True)  # a worker POSTs what it makes
        self.relay = Relay(redis, settings)
        self.windows = Windows(redis, settings)
        self.clock = clock
        self.scheduler = Scheduler(enqueue, clock)
        self.background = Background()  # writes outliving their job
        self.composer = Composer(settings, self.store, self.renderer, self.links)
        self.outcomes = Outcomes(
            settings, redis, self.store, self.customers, self.webhooks, self.scheduler, self._deliver_fresh
        )

    def context(
        self,
        source: str,
        event: dict[str, Any],
        customer: CustomerRecord,
        delivery: dict[str, Any],
        stopped: frozenset[str],
        driver_contact: str | None = None,
    ) -> Send:
        locale = self.renderer.resolve_locale(
            customer.prefs.get("locale") or customer.locale or self.settings.default_locale
        )
        return Send.of(self.settings, source, event, customer, delivery, locale, stopped, driver_contact)

    # -- the policy ---------------------------------------------------------------------------
    async def deliver(self, send: Send, spec: Spec, *, fresh: bool) -> str:
        """Take one message as far as it can go now; returns its status. ``fresh``: planned by
        the event being processed (not a message that waited)."""
        rec = send.record(spec)
        send.used.add(spec.channel)
        now = self.clock()
        dropped = await self._outdated(send, spec, rec, fresh, now)
        if dropped is not None:
            return dropped
        # Erasure, opt-outs, STOP and a changed address are judged by the send gate, in the claim
        # (lua_log.CLAIM_MESSAGE), atomically, on every path.
        due, reason = await self._hold(send, spec, rec, fresh, now)
        if due is None:
            due, reason = await self._pace(spec, now)
        if due is not None:
            return await self._defer(send, rec, spec, due, reason)
        # Render (and store the tracking link) before the claim: between the claim and the
        # provider call nothing touches Redis, so an outage there cannot strand a claimed
        # message that was never sent.
        await self.composer.render(send, spec.channel)
        token = secrets.token_hex(8)
        claim = await self._claim(send, spec, rec, fresh, now, token)
        match claim:
            case Gated(reason):
                metrics.MESSAGES.labels(rec.channel, "skipped").inc()
                await self.outcomes.stats.message(rec.channel, "skipped", send.delivery.get("merchant_id"))
                log.info("message %s skipped: %s", rec.channel, reason, extra={**send.ids, "message_id": rec.id})
                return "skipped"
            case Limited(until_ms):
                limit = hourly_limit(self.settings.policy, spec.channel)
                why = f"more than {limit} {spec.channel} messages to this customer in an hour"
                return await self._defer(send, rec, spec, until_ms / 1000, why)
            case Found(status):
                return await self._found(send, spec, rec, status)
        metrics.MESSAGES.labels(rec.channel, "sending").inc()
        return await self._send(send, spec, rec, token)

    async def _deliver_fresh(self, send: Send, spec: Spec) -> str:
        return await self.deliver(send, spec, fresh=True)

    async def _outdated(self, send: Send, spec: Spec, rec: MessageRecord, fresh: bool, now: float) -> str | None:
        """Drop a message past its time to live, or one that waited and a newer event replaced."""
        if send.expires is not None and now >= send.expires:
            return await self._drop(send, spec, rec, "expired", f"its time to live ended at {iso(send.expires)}")
        if fresh:
            return None
        occurred = occurred_ms_of(send.event["occurred_at"])
        newer = await self.store.newer_events(rec.delivery_id, occurred, int(send.event.get("seq") or 0))
        replaced = obsoleted_by(send.milestone, newer, self.settings.policy)
        if replaced:
            return await self._drop(send, spec, rec, "superseded", f"a newer {replaced} event arrived while it waited")
        return None

    async def _pace(self, spec: Spec, now: float) -> tuple[float | None, str]:
        """The provider sender's shared pace: wait briefly here, or say until when to hold."""
        cfg = self.settings.policy
        rate = cfg.sender_rate.get(spec.channel, 0.0)  # type: ignore[call-overload]
        if rate > 0:
            wait = await self.store.pace(
                spec.channel, sender_id(self.settings, spec.channel), rate, cfg.sender_max_wait
            )
            if wait < 0:
                return now - wait, "the provider sender is at its rate limit"
            if wait > 0:
                await asyncio.sleep(wait)
        return None, ""

    async def _claim(self, send: Send, spec: Spec, rec: MessageRecord, fresh: bool, now: float, token: str) -> Claim:
        """Claim the message for sending, asked again through a short Redis outage: with its
        token, a claim whose answer was lost is still this handler's (without, the message would
        be left "sending", then "unknown")."""
        try:
            claim = await outlasting(
                lambda: self.store.claim(
                    rec,
                    hourly_limit=hourly_limit(self.settings.policy, spec.channel),
                    clock_ms=int(now * 1000),
                    allowed=FRESH if fresh else PENDING,
                    token=token,
                ),
                patience=self.settings.worker.job_timeout / 4,
            )
            await replicated(self.redis, self.settings)  # with Sentinel: a failover must not forget it
            return claim
        except BaseException:
            # Redis outlasted the patience, or the job was cancelled: the claim may have landed
            # with its answer lost. Nothing was sent, so give it back once Redis answers; left
            # alone it would stay "sending" and end "unknown" without ever being sent.
            self.background.spawn(self._release(send, spec, rec, token))
            raise

    async def _found(self, send: Send, spec: Spec, rec: MessageRecord, status: str) -> str:
        """The message is past the claim already: in doubt, or finished (what a crash may have
        cut short after its outcome is finished now)."""
        if status == "sending":
            return await self.resolve_in_doubt(rec, send, spec)
        if status == "failed":
            await self.outcomes.fall_back(send, rec, "", note=False)  # a fallback a crash may have cut short
        if status in TOLD:
            await self.outcomes.tell_recorded(rec)  # a crash may have cut off the status webhooks
        return status

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
                due, reason = window_end, f"collapsing {send.milestone} updates until {iso(window_end)}"
        if due is not None and due <= now:
            return None, ""  # a window that has just ended: send now
        return due, reason

    async def _drop(self, send: Send, spec: Spec, rec: MessageRecord, status: str, detail: str) -> str:
        claim = await self.store.claim(rec, status, detail)
        if isinstance(claim, Found):
            if claim.status == "sending":  # a call cut off by a crash: resolved, not left sending for good
                return await self.resolve_in_doubt(rec, send, spec)
            return claim.status
        metrics.MESSAGES.labels(rec.channel, status).inc()
        log.info("message %s %s: %s", rec.channel, status, detail, extra={**send.ids, "message_id": rec.id})
        if status == "expired":
            await self.outcomes.tell(rec, status, None)
        return status

    async def _defer(self, send: Send, rec: MessageRecord, spec: Spec, due: float, reason: str) -> str:
        if send.expires is not None and due >= send.expires:
            detail = f"{reason}, but it expires at {iso(send.expires)}"
            return await self._drop(send, spec, rec, "expired", detail)
        due_ms = int(due * 1000)
        claim = await self.store.claim(rec, "deferred", reason, due_ms=due_ms, job=job_payload(send, spec))
        if isinstance(claim, Found):
            if claim.status == "sending":  # a call cut off by a crash: resolved, not left sending for good
                return await self.resolve_in_doubt(rec, send, spec)
            return claim.status
        metrics.MESSAGES.labels(rec.channel, "deferred").inc()
        # A crash before this leaves a deferred message without a job: the sweeper finds it.
        await self.scheduler.schedule(MessageJobKind.DEFERRED, send, spec, due_ms)
        log.info(
            "message %s deferred to %s: %s", rec.channel, iso(due), reason, extra={**send.ids, "message_id": rec.id}
        )
        return "deferred"

    # -- sending ------------------------------------------------------------------------------
    async def _send(self, send: Send, spec: Spec, rec: MessageRecord, token: str) -> str:
        rendered = await self.composer.render(send, rec.channel)
        if rendered is None:
            await self.store.record(rec.id, "failed", error=f"rendering: {send.render_error}")
            metrics.MESSAGES.labels(rec.channel, "failed").inc()
            return "failed"
        ask = lambda call: self._before_provider(send, spec, rec, token, call)  # noqa: E731  (WhatsApp's window, once claimed)
        outbound, refused = await outbound_for(self.composer, self.windows, send, rec, rendered, ask)
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
            result = refused or await self.channels[rec.channel].send(outbound)
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
        status, due_ms = await self.background.run(
            self.outcomes.conclude(send, spec, rec, result, status, extra, token),
            inline=self.settings.worker.job_timeout / 2,
        )
        if status == "failed":
            # Not in the durable part (it sends on other channels); a re-run finishes it.
            await self.outcomes.fall_back(send, rec, f"{rec.channel} failed permanently")
        elif status == "transient" and due_ms is not None:
            # Lost in a crash here: the sweeper finds it.
            await self.scheduler.schedule(MessageJobKind.RETRY, send, spec, due_ms)
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
            return await outlasting(call, patience=self.settings.worker.job_timeout / 4)
        except BaseException:
            self.background.spawn(self._release(send, spec, rec, token))
            raise

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

    # -- a send left in doubt, a claim given back ---------------------------------------------------
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
            rendered = await self.composer.render(send, rec.channel)
            if rendered is not None:
                outbound, _ = await outbound_for(self.composer, self.windows, send, rec, rendered)
                return await self._reconcile_cut_off(send, spec, rec, fields, claimed_ms, outbound)
        await self.store.record(rec.id, "unknown", error="a worker stopped during the provider call; not resent")
        metrics.MESSAGES.labels(rec.channel, "unknown").inc()
        await self.outcomes.tell(rec, "unknown", None)
        return "unknown"

    async def _reconcile_cut_off(
        self, send: Send, spec: Spec, rec: MessageRecord, fields: dict[str, str], claimed_ms: int, outbound: Outbound
    ) -> str:
        """Look up a message whose provider call a dead handler's crash cut off, and record what
        the lookup says under that handler's claim (its token: the claim's own write, guarded like
        any outcome, so of two handlers resolving the message one records it): found, ``accepted``
        with the provider's id, as any send; otherwise in doubt, as a send whose answer was lost:
        a retry that looks it up again before any send, ``unknown`` once ``worker.max_tries``
        tries have ended in doubt. This handler holds no claim of its own, so it sends nothing."""
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

    async def _release(self, send: Send, spec: Spec, rec: MessageRecord, token: str) -> None:
        """Give back a claim that never reached the provider, trying through a Redis outage for
        as long as the sending lease (after it, another handler would mark the message unknown),
        and queue the message's own job to send it (the sweeper's backup: it is indexed as due)."""
        detail = "claim given back: Redis failed before the provider call; a retry sends it"
        job = job_payload(send, spec)
        patience = self.settings.worker.job_timeout + 5
        now_ms = int(self.clock() * 1000)
        try:
            if await outlasting(lambda: self.store.release(rec, token, detail, job, now_ms), patience=patience):
                log.info("message %s claim given back", rec.channel, extra={"message_id": rec.id})
                metrics.MESSAGES.labels(rec.channel, "released").inc()
                await outlasting(
                    lambda: self.scheduler.schedule(MessageJobKind.RETRY, send, spec, now_ms, "released"),
                    patience=patience,
                )
        except (RedisConnectionError, RedisTimeoutError) as e:
            log.warning("could not give back a claim (%s); it ends unknown", e, extra={"message_id": rec.id})

    async def settle(self) -> None:
        """Wait for the writes outliving their jobs: claims given back, outcomes recorded."""
        await self.background.settle()

"""Outbound webhooks to upstream systems: signed, retried with backoff, dead-lettered, replayable.

``Webhooks.emit(type, data, key=...)`` creates one delivery per matching subscription and
enqueues an arq job on the webhook queue (``webhooks.queue_name``), never on the event queue,
so a slow or dead receiver cannot delay customer messages. With ``key`` the delivery id is
derived from (type, key, url), so emitting the same fact twice (a retried job, a replayed
provider callback) creates one delivery. Receivers get at-least-once delivery and de-duplicate
on the ``id`` field (also in the ``Hub-Webhook-Id`` header).

Body: ``{"id", "type", "created_at", "data"}``; header ``Hub-Signature`` (see ``signing``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from typing import Any

import aiohttp
from arq import Retry
from redis.asyncio import Redis

from . import jobs, keys, lua_records, metrics
from .clock import now_iso
from .config import Settings
from .config_sections import WebhookSubscription
from .signing import signature_header
from .stats import Stats

__all__ = ["Webhooks", "deliver_webhook", "replay_webhooks"]

log = logging.getLogger(__name__)


# Seconds a delivery's job waits behind the POST of the process that made it (``direct``): the
# POST's timeout, and this much more for the outcome to be recorded.
DIRECT_MARGIN = 5.0


class Webhooks:
    """``direct`` (a worker): the process that makes a delivery also POSTs it at once, while it
    has a free slot (``webhooks.direct_concurrency``); the delivery's job is queued all the same, due
    when that POST must have ended, and runs only if its outcome was not recorded by then (the
    process died, Redis was away). Delivered, the job is dropped; failed, the job takes over at
    the first retry. A delivery then costs its POST and two Redis calls instead of a job's
    round trips through the queue, and reaches the receiver without waiting for a worker's poll."""

    def __init__(self, redis: Redis, settings: Settings, *, direct: bool = False) -> None:
        self.redis = redis
        self.settings = settings
        self._create = redis.register_script(lua_records.CREATE_WEBHOOK)
        self._settle = redis.register_script(lua_records.SETTLE_WEBHOOK)
        self.ttl = settings.retention.message_log_days * 86_400
        # With one attempt allowed, a failed direct POST would be the last: the job path decides.
        cfg = settings.webhooks
        direct = direct and cfg.max_attempts > 1 and cfg.direct_concurrency > 0
        self._slots = asyncio.Semaphore(cfg.direct_concurrency) if direct else None
        self._http: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def subscribers(self, event_type: str) -> list[WebhookSubscription]:
        return [s for s in self.settings.webhooks.subscriptions if not s.events or event_type in s.events]

    async def emit(self, event_type: str, data: dict[str, Any], *, key: str | None = None) -> list[str]:
        """Queue ``event_type`` for every subscriber; returns the delivery ids created."""
        subs = self.subscribers(event_type)
        if not subs:
            return []
        created_at = now_iso()
        now_ms = int(time.time() * 1000)
        ids = []
        customer_id = str(data.get("customer_id") or "")
        lease_ms = int((self.settings.webhooks.timeout + DIRECT_MARGIN) * 1000)
        for sub in subs:
            delivery_id = _delivery_id(event_type, key, sub.url)
            body = json.dumps(
                {"id": delivery_id, "type": event_type, "created_at": created_at, "data": data},
                separators=(",", ":"),
                default=str,
            )
            fields = {
                "id": delivery_id,
                "url": sub.url,
                "type": event_type,
                "body": body,
                "status": "pending",
                "attempts": "0",
                "created_at": created_at,
            }
            # A free slot of its own (taken at once), or this delivery goes through the queue.
            slots = self._slots if self._slots is not None and not self._slots.locked() else None
            if slots is not None:
                await slots.acquire()
            try:
                due_ms = now_ms + lease_ms if slots is not None else now_ms
                created = await self._create_delivery(delivery_id, fields, customer_id, now_ms, due_ms)
            except BaseException:
                if slots is not None:  # not made, so nothing to POST: the slot goes back
                    slots.release()
                raise
            ids.append(delivery_id)
            if slots is not None:
                self._start(sub, delivery_id, event_type, body, created)
        metrics.WEBHOOKS_EMITTED.labels(event_type).inc(len(ids))
        return ids

    async def _create_delivery(
        self, delivery_id: str, fields: dict[str, str], customer_id: str, now_ms: int, due_ms: int
    ) -> bool:
        """The record and its job, due at ``due_ms`` (lua_records.CREATE_WEBHOOK); False when the
        delivery was made before. One EVALSHA, no pipeline (a pipeline's scripts cost a SCRIPT
        EXISTS)."""
        queue = self.settings.webhooks.queue_name
        created = await self._create(
            keys=[
                keys.webhook(delivery_id),
                keys.WEBHOOK_INDEX,
                jobs.job_key(delivery_id),
                queue,
                keys.webhooks_of(customer_id) if customer_id else keys.WEBHOOK_INDEX,
            ],
            args=[
                json.dumps(fields),
                now_ms,
                jobs.payload(jobs.DELIVER_WEBHOOK, (delivery_id,), enqueued_ms=now_ms),
                delivery_id,
                self.ttl * 1000,
                self.ttl,
                jobs.wake_channel(queue),
                "1" if customer_id else "0",  # erasure scrubs the body (hub.erasure)
                due_ms,
            ],
        )
        return bool(created)

    def _start(self, sub: WebhookSubscription, delivery_id: str, kind: str, body: str, created: bool) -> None:
        assert self._slots is not None
        if not created:  # made before (a repeated emit): its job or an earlier POST has it
            self._slots.release()
            return
        task = asyncio.get_running_loop().create_task(self._deliver_now(sub, delivery_id, kind, body))
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        assert self._slots is not None
        self._slots.release()

    async def _deliver_now(self, sub: WebhookSubscription, delivery_id: str, kind: str, body: str) -> None:
        """POST a delivery just made, and record the outcome (see the class's docstring)."""
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            code, error = await _post(self._http, self.settings, sub, delivery_id, kind, body.encode())
            now = now_iso()
            if error is None:
                fields = {"status": "delivered", "attempts": "1", "delivered_at": now, "last_status": str(code)}
                due_ms = 0
            else:
                fields = {"status": "retrying", "attempts": "1", "last_error": error, "updated_at": now}
                due_ms = int((time.time() + _backoff(self.settings, 1)) * 1000)
            queue = self.settings.webhooks.queue_name
            await self._settle(
                keys=[keys.webhook(delivery_id), jobs.job_key(delivery_id), queue],
                args=[delivery_id, json.dumps(fields), due_ms],
            )
            metrics.WEBHOOK_DELIVERIES.labels("retry" if error else "delivered").inc()
            await Stats(self.redis, self.settings).count("webhook.retry" if error else "webhook.delivered")
        except Exception as e:  # Redis away, say: the delivery's job delivers it when due
            log.warning(
                "webhook POSTed but not recorded (%s); its job takes over", e, extra={"message_id": delivery_id}
            )

    async def settle(self) -> None:
        """Wait for the deliveries this process is POSTing."""
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def close(self, timeout: float = 15.0) -> None:
        """Let the POSTs in flight end (their jobs cover any cut off), then close the HTTP session."""
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def list(self, *, status: str | None, event_type: str | None, limit: int) -> list[dict[str, Any]]:
        source = keys.WEBHOOK_DEAD if status == "dead" else keys.WEBHOOK_INDEX
        ids = await self.redis.zrange(source, -max(limit * 5, limit), -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hgetall(keys.webhook(delivery_id))
            rows = await pipe.execute()
        out = []
        for row in rows:
            if not row or (status and row.get("status") != status) or (event_type and row.get("type") != event_type):
                continue
            row["attempts"] = int(row.get("attempts", "0"))
            row["body"] = json.loads(row["body"])
            out.append(row)
        return out[-limit:]


def _delivery_id(event_type: str, key: str | None, url: str) -> str:
    """Derived from (type, key, url) when there is a key, so the same fact is one delivery."""
    if key is None:
        return f"wh_{uuid.uuid4().hex[:24]}"
    digest = hashlib.sha256(f"{event_type}\x1f{key}\x1f{url}".encode()).hexdigest()
    return f"wh_{digest[:24]}"


def _backoff(settings: Settings, attempts: int) -> float:
    cfg = settings.webhooks
    delay: float = min(cfg.retry_max_delay, cfg.retry_base_delay * 2 ** (attempts - 1))
    return delay * (0.5 + random.random() / 2)  # jitter spreads retries, not a secret


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    """arq job: POST one delivery; retry with backoff; dead-letter after max_attempts."""
    try:
        return await _deliver(ctx, delivery_id)
    except Retry:
        raise
    except Exception as e:  # Redis briefly unreachable, a bug: never leave the delivery stuck
        metrics.JOB_RETRIES.labels(jobs.DELIVER_WEBHOOK).inc()
        log.exception("webhook delivery failed unexpectedly; retrying", extra={"message_id": delivery_id})
        raise Retry(defer=_backoff(ctx["settings"], max(1, ctx.get("job_try", 1)))) from e


async def _post(
    http: aiohttp.ClientSession, settings: Settings, sub: WebhookSubscription, delivery_id: str, kind: str, body: bytes
) -> tuple[int | None, str | None]:
    """POST one delivery, signed; returns the HTTP status (None: no answer) and the error, if any."""
    started = time.perf_counter()
    try:
        async with http.post(
            sub.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "Hub-Signature": signature_header(sub.secret, body),
                "Hub-Webhook-Id": delivery_id,
                "Hub-Event-Type": kind,
                "User-Agent": "delivery-hub-webhooks/1",
            },
            timeout=aiohttp.ClientTimeout(total=settings.webhooks.timeout),
            allow_redirects=False,
        ) as resp:
            await resp.read()
            metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
            return resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        return None, f"{type(e).__name__}: {e}"[:300]


async def _deliver(ctx: dict[str, Any], delivery_id: str) -> str:
    settings: Settings = ctx["settings"]
    redis: Redis = ctx["hub_redis"]
    http: aiohttp.ClientSession = ctx["http"]
    key = keys.webhook(delivery_id)
    row = await redis.hgetall(key)
    if not row or row.get("status") in ("delivered", "dead"):
        return row.get("status", "missing") if row else "missing"
    sub = next((s for s in settings.webhooks.subscriptions if s.url == row["url"]), None)
    attempts = int(row.get("attempts", "0")) + 1
    now = now_iso()
    if sub is None:
        await _dead(redis, key, delivery_id, attempts, "the subscription is no longer configured")
        await Stats(redis, settings).count("webhook.dead")
        return "dead"
    code, error = await _post(http, settings, sub, delivery_id, row["type"], row["body"].encode())
    if error is None:
        async with redis.pipeline(transaction=True) as pipe:  # one round trip
            pipe.hset(
                key,
                mapping={
                    "status": "delivered",
                    "attempts": str(attempts),
                    "delivered_at": now,
                    "last_status": str(code),
                },
            )
            pipe.hdel(key, "last_error")
            await pipe.execute()
        metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
        await Stats(redis, settings).count("webhook.delivered")
        return "delivered"
    if attempts >= settings.webhooks.max_attempts:
        await _dead(redis, key, delivery_id, attempts, error)
        await Stats(redis, settings).count("webhook.dead")
        return "dead"
    await redis.hset(
        key, mapping={"status": "retrying", "attempts": str(attempts), "last_error": error, "updated_at": now}
    )
    metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
    await Stats(redis, settings).count("webhook.retry")
    raise Retry(defer=_backoff(settings, attempts))


async def _dead(redis: Redis, key: str, delivery_id: str, attempts: int, error: str) -> None:
    cutoff = int(time.time() * 1000) - 31 * 86_400_000  # older dead letters have expired records
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(keys.WEBHOOK_DEAD, "-inf", cutoff)
        pipe.hset(
            key,
            mapping={
                "status": "dead",
                "attempts": str(attempts),
                "last_error": error,
                "updated_at": now_iso(),
            },
        )
        pipe.zadd(keys.WEBHOOK_DEAD, {delivery_id: int(time.time() * 1000)})
        await pipe.execute()
    metrics.WEBHOOK_DELIVERIES.labels("dead").inc()
    metrics.DEAD_LETTERS.labels("webhook").inc()
    log.warning("webhook dead-lettered after %d attempts: %s", attempts, error, extra={"message_id": delivery_id})


async def replay_webhooks(redis: Redis, settings: Settings, ids: list[str]) -> list[str]:
    """Queue deliveries again (dead or not); returns the ids queued."""
    queued = []
    now_ms = int(time.time() * 1000)
    for delivery_id in ids:
        key = keys.webhook(delivery_id)
        if not await redis.exists(key):
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": "pending", "attempts": "0"})
            pipe.zrem(keys.WEBHOOK_DEAD, delivery_id)
            jobs.queue_on(
                pipe,
                settings.webhooks.queue_name,
                jobs.DELIVER_WEBHOOK,
                (delivery_id,),
                job_id=delivery_id,
                at_ms=now_ms,
                expires_ms=settings.retention.message_log_days * 86_400_000,
            )
            await pipe.execute()
        queued.append(delivery_id)
    return queued

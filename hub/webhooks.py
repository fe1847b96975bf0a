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

__all__ = ["Webhooks", "deliver_webhook", "replay_webhooks"]

log = logging.getLogger(__name__)


class Webhooks:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._create = redis.register_script(lua_records.CREATE_WEBHOOK)
        self.ttl = settings.retention.message_log_days * 86_400

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
        for sub in subs:
            if key is None:
                delivery_id = f"wh_{uuid.uuid4().hex[:24]}"
            else:
                digest = hashlib.sha256(f"{event_type}\x1f{key}\x1f{sub.url}".encode()).hexdigest()
                delivery_id = f"wh_{digest[:24]}"
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
            queue = self.settings.webhooks.queue_name
            # One EVALSHA per delivery, no pipeline (a pipeline's scripts cost a SCRIPT EXISTS).
            await self._create(
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
                ],
            )
            ids.append(delivery_id)
        metrics.WEBHOOKS_EMITTED.labels(event_type).inc(len(ids))
        return ids

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
        return "dead"
    body = row["body"].encode()
    error = None
    started = time.perf_counter()
    try:
        async with http.post(
            sub.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "Hub-Signature": signature_header(sub.secret, body),
                "Hub-Webhook-Id": delivery_id,
                "Hub-Event-Type": row["type"],
                "User-Agent": "delivery-hub-webhooks/1",
            },
            timeout=aiohttp.ClientTimeout(total=settings.webhooks.timeout),
            allow_redirects=False,
        ) as resp:
            await resp.read()
            metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
            if 200 <= resp.status < 300:
                async with redis.pipeline(transaction=True) as pipe:  # one round trip
                    pipe.hset(
                        key,
                        mapping={
                            "status": "delivered",
                            "attempts": str(attempts),
                            "delivered_at": now,
                            "last_status": str(resp.status),
                        },
                    )
                    pipe.hdel(key, "last_error")
                    await pipe.execute()
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                return "delivered"
            error = f"HTTP {resp.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        error = f"{type(e).__name__}: {e}"[:300]
    if attempts >= settings.webhooks.max_attempts:
        await _dead(redis, key, delivery_id, attempts, error)
        return "dead"
    await redis.hset(
        key, mapping={"status": "retrying", "attempts": str(attempts), "last_error": error, "updated_at": now}
    )
    metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
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

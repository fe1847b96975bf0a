"""Sending dead letters again (``POST /v1/messages/replay``, ``hub messages replay``).

Kept apart from the send path, so the API can queue a replay without loading the dispatcher or
any provider client: the replay's job (``send_message``, kind ``replay``) runs the whole delivery
policy again in a worker (hub.retries).
"""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from . import jobs
from .config import Settings
from .store import HubStore

__all__ = ["replay_messages"]


async def replay_messages(redis: Redis, settings: Settings, ids: list[str]) -> list[str]:
    """Send dead-lettered messages again; returns the ids queued. Only a message still ``dead``
    is queued (twice asked, once queued), and its job runs the whole policy again: it is not sent
    if it has expired or was superseded meanwhile, and never if a provider already has it."""
    store = HubStore(redis, settings)
    queued = []
    for mid in ids:
        job = (await store.message_fields(mid)).get("job")
        if not job or not await store.replay(mid):
            continue
        payload = json.loads(job)
        now_ms = int(time.time() * 1000)
        replay = jobs.MessageJob(
            payload["source"], payload["event"], payload["spec"], now_ms, jobs.MessageJobKind.REPLAY
        )
        await jobs.enqueue(
            redis,
            settings.worker.queue_name,
            jobs.SEND_MESSAGE,
            replay.args(),
            job_id=jobs.message_job_id(mid, "replay", now_ms),
            at_ms=now_ms,
            expires_ms=settings.retention.message_log_days * 86_400_000,
            enqueued_ms=now_ms,
        )
        queued.append(mid)
    return queued

"""What operators and their tools read: liveness, readiness and Prometheus metrics.

    GET    /healthz                        the process answers
    GET    /readyz                         Redis, a worker heartbeat, the event queue's oldest due job
    GET    /metrics                        Prometheus text exposition (when ops.metrics)

Readiness and the metrics' gauges come from one look at Redis (``health``), bounded in time so
a hung Redis makes the probe fail rather than hang.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import keys, metrics
from .appkeys import REDIS, SETTINGS, STOPPING
from .params import json_response

__all__ = ["add_routes", "health"]

_REDIS_PATIENCE = 2.0  # seconds a readiness or metrics check waits for Redis before calling it unreachable


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _queue_stats(redis: Redis, queue: str, now_ms: int) -> metrics.QueueStats:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zcard(queue)
        pipe.zrangebyscore(queue, "-inf", now_ms, start=0, num=1, withscores=True)
        due, total, oldest = await pipe.execute()
    # A job's score is when it became due (enqueued, or its deferral ended), so the oldest due
    # job's age is how long the queue has kept it waiting (or, while it runs, how long it runs).
    age = max(0.0, (now_ms - float(oldest[0][1])) / 1000) if oldest else 0.0
    return metrics.QueueStats(int(due), int(total) - int(due), age)


async def health(app: web.Application) -> tuple[list[str], metrics.ScrapeTime]:
    """Readiness problems (none: ready) and the scrape-time gauges, from one look at Redis."""
    settings = app[SETTINGS]
    ops = settings.ops
    problems: list[str] = []
    if app[STOPPING].is_set():
        problems.append("shutting down")
    queues: dict[str, metrics.QueueStats] = {}
    workers, heartbeat_age, redis_up = 0, None, True
    now = time.time()
    try:
        async with asyncio.timeout(_REDIS_PATIENCE):
            redis = app[REDIS]
            await redis.ping()
            beats = await redis.zrangebyscore(keys.WORKER_HEARTBEAT, "-inf", "+inf", withscores=True)
            now_ms = int(now * 1000)
            queues["events"] = await _queue_stats(redis, settings.worker.queue_name, now_ms)
            queues["webhooks"] = await _queue_stats(redis, settings.webhooks.queue_name, now_ms)
    except (RedisError, OSError, TimeoutError):
        redis_up = False
        problems.append("redis unreachable")
    else:
        # The webhook worker beats under "webhooks:..."; readiness is about the event workers.
        ages = [now - float(score) for name, score in beats if not str(name).startswith("webhooks:")]
        workers = sum(age <= ops.ready_heartbeat_seconds for age in ages)
        heartbeat_age = max(0.0, min(ages)) if ages else None
        if workers == 0:
            problems.append(f"no worker heartbeat in the last {ops.ready_heartbeat_seconds:g} s")
        oldest = queues["events"].oldest_age
        if oldest > ops.ready_max_queue_age_seconds:
            problems.append(
                f"the event queue's oldest due job has waited {oldest:.0f} s"
                f" (limit {ops.ready_max_queue_age_seconds:g} s)"
            )
    gauges = metrics.ScrapeTime(
        redis_up=redis_up, queues=queues, workers=workers, heartbeat_age=heartbeat_age, ready=not problems
    )
    return problems, gauges


async def readyz(request: web.Request) -> web.Response:
    problems, gauges = await health(request.app)
    checks = {
        "redis": "ok" if gauges.redis_up else "unreachable",
        "workers": gauges.workers,
        "queue_oldest_age_seconds": round(gauges.queues["events"].oldest_age, 3) if gauges.redis_up else None,
    }
    if problems:
        return json_response({"status": "unavailable", "problems": problems, "checks": checks}, status=503)
    return json_response({"status": "ready", "checks": checks})


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition: this process's counters and the gauges read from Redis now."""
    _, gauges = await health(request.app)
    body = metrics.exposition([gauges])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if app[SETTINGS].ops.metrics:
        app.router.add_get("/metrics", metrics_endpoint)

"""The arq worker: one job per accepted event (``process_event``), and one per message that
had to wait (``send_message``: quiet hours, collapsing, rate limits, retries, replays).

Clients (Redis, Twilio, SMTP pool, firebase-admin app) are created once in ``on_startup`` and
closed in ``on_shutdown``. Any unexpected error (Redis briefly unreachable, a bug) retries the
job with backoff instead of failing it, so an accepted event is never dropped; the message log
makes re-runs safe. Job names and their JSON wire format are hub.jobs'; this module only
registers the functions under those names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from arq import Retry
from arq.cron import cron
from arq.typing import StartupShutdown
from arq.worker import Worker, func

from . import jobs, keys, metrics
from .arq_worker import FreeRetry, HubWorker
from .config import Settings
from .erasure import migrate_optout_keys
from .jobs import job_deserializer, job_serializer
from .message import SendInProgress
from .pipeline import Runtime
from .providers import build_channels
from .redis_conn import NotReplicated, arq_redis_settings, connect, load_scripts, require_redis
from .relay import close_relay_job
from .webhooks import deliver_webhook

__all__ = [
    "create_webhook_worker",
    "create_worker",
    "drain",
    "process_event",
    "run_workers",
    "send_message",
    "sweep_messages",
]

log = logging.getLogger(__name__)
HEARTBEAT_EVERY = 5.0


async def process_event(ctx: dict[str, Any], source: str, event: dict[str, Any]) -> dict[str, Any]:
    runtime: Runtime = ctx["runtime"]
    job_try: int = ctx.get("job_try", 1)
    try:
        # Our own limit, below arq's: arq fails a job that overruns and never retries it.
        async with asyncio.timeout(runtime.settings.worker.job_timeout):
            outcome = await runtime.process(source, event, job_try)
    except SendInProgress as e:
        log.info("%s", e, extra={"event_id": event.get("event_id"), "source": source})
        raise Retry(defer=e.retry_in) from e
    except NotReplicated as e:
        raise _unreplicated(e, job_try, event) from e
    except Exception as e:
        delay = min(60.0, 2.0 ** min(job_try, 6))
        metrics.JOB_RETRIES.labels(jobs.PROCESS_EVENT).inc()
        log.exception(
            "event failed, retrying in %.0fs", delay, extra={"event_id": event.get("event_id"), "source": source}
        )
        raise Retry(defer=delay) from e
    return {"status": outcome.status, "messages": outcome.messages}


async def send_message(
    ctx: dict[str, Any], source: str, event: dict[str, Any], spec: dict[str, Any], due_ms: int, kind: str
) -> str:
    """A message whose wait is over (see hub.retries.MessageJobs.run)."""
    runtime: Runtime = ctx["runtime"]
    job_try: int = ctx.get("job_try", 1)
    try:
        async with asyncio.timeout(runtime.settings.worker.job_timeout):
            return await runtime.run_job(source, event, spec, due_ms, kind)
    except SendInProgress as e:
        log.info("%s", e, extra={"event_id": event.get("event_id")})
        raise Retry(defer=e.retry_in) from e
    except NotReplicated as e:
        raise _unreplicated(e, job_try, event) from e
    except Exception as e:
        delay = min(60.0, 2.0 ** min(job_try, 6))
        metrics.JOB_RETRIES.labels(jobs.SEND_MESSAGE).inc()
        log.exception("message job failed, retrying in %.0fs", delay, extra={"event_id": event.get("event_id")})
        raise Retry(defer=delay) from e


def _unreplicated(e: NotReplicated, job_try: int, event: dict[str, Any]) -> FreeRetry:
    """No replica acknowledged the job's writes in time (a failover under way): not the job's
    fault, so it waits without spending a try (an event must outlast a slow re-sync)."""
    delay = min(60.0, 2.0 ** min(job_try, 6))
    log.warning("%s; trying again in %.0fs", e, delay, extra={"event_id": event.get("event_id")})
    return FreeRetry(defer=delay)


async def sweep_messages(ctx: dict[str, Any]) -> int:
    """Every minute: queue again waiting messages whose job was lost (see MessageJobs.sweep)."""
    runtime: Runtime = ctx["runtime"]
    return await runtime.sweep()


async def _stop_heartbeat(ctx: dict[str, Any]) -> None:
    task = ctx.get("heartbeat")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _heartbeat(redis: Any, name: str) -> None:
    while True:
        with contextlib.suppress(Exception):
            now = time.time()
            await redis.zadd(keys.WORKER_HEARTBEAT, {name: now})
            # Workers killed without a goodbye leave their last beat; a day later it goes.
            await redis.zremrangebyscore(keys.WORKER_HEARTBEAT, "-inf", now - 86_400)
        await asyncio.sleep(HEARTBEAT_EVERY)


def _grace(settings: Settings) -> int:
    """arq's completion wait on SIGTERM (whole seconds): ``ops.shutdown_grace_seconds``."""
    return math.ceil(settings.ops.shutdown_grace_seconds)


def create_webhook_worker(settings: Settings, *, burst: bool = False, handle_signals: bool = True) -> Worker:
    """The arq worker that delivers outbound webhooks (its own queue; see hub.webhooks)."""
    require_redis(settings)
    cfg = settings.webhooks

    name = f"webhooks:{socket.gethostname()}:{os.getpid()}:{id(settings):x}"

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["hub_redis"] = connect(settings)
        ctx["http"] = aiohttp.ClientSession()
        ctx["heartbeat"] = asyncio.get_running_loop().create_task(_heartbeat(ctx["hub_redis"], name))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await _stop_heartbeat(ctx)
        if "http" in ctx:
            await ctx["http"].close()
        if "hub_redis" in ctx:
            await ctx["hub_redis"].aclose()

    return HubWorker(
        functions=[func(deliver_webhook, name=jobs.DELIVER_WEBHOOK, max_tries=cfg.max_attempts + 5)],
        queue_name=cfg.queue_name,
        redis_settings=arq_redis_settings(settings),
        burst=burst,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        job_completion_wait=_grace(settings),
        max_jobs=cfg.concurrency,
        job_timeout=cfg.timeout + 30,
        keep_result=0,
        poll_delay=0.1,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        log_results=False,
    )


async def drain(worker: Worker, *, horizon: float = 2.0, poll: float = 0.02) -> None:
    """Run ``worker`` until nothing is due within ``horizon`` seconds and no job is running.

    arq's burst mode waits for every queued job, including messages held until tomorrow
    morning; this stops once only such far-off jobs are left (tests, one-off runs)."""
    task = asyncio.get_running_loop().create_task(worker.main())
    queue = worker.queue_name
    idle = 0
    try:
        while not task.done():
            await asyncio.sleep(poll)
            if worker._pool is None:  # still starting
                continue
            due = await worker.pool.zcount(queue, "-inf", int((time.time() + horizon) * 1000))
            busy = any(not t.done() for t in worker.tasks.values())
            idle = idle + 1 if due == 0 and not busy else 0
            if idle >= 3:
                break
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()


async def run_workers(workers: list[Worker]) -> None:
    """Run several arq workers in this process until SIGTERM/SIGINT, then stop them gracefully.
    Raises what stopped a worker otherwise (a lost Redis connection, say)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    signalled = asyncio.Event()

    def stop() -> None:
        if not stopping.is_set():
            stopping.set()
            for w in workers:
                w.handle_sig_wait_for_completion(signal.SIGTERM)

    def on_signal() -> None:
        if not signalled.is_set():
            running = sum(not t.done() for w in workers for t in w.tasks.values())
            grace = max(w._job_completion_wait for w in workers)
            log.info("stopping: no new jobs; %d running get up to %d s to finish", running, grace)
        signalled.set()
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    runs = [asyncio.ensure_future(w.async_run()) for w in workers]
    try:
        # One worker ending by itself ends them all, so the caller starts afresh (or the process
        # exits): never a process that lives on with one of its workers gone.
        await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*runs, return_exceptions=True)
    finally:
        for w in workers:
            await w.close()
    if signalled.is_set():
        return
    failures = [r.exception() for r in runs if not r.cancelled() and r.exception() is not None]
    raise failures[0] if failures else RuntimeError("a worker stopped by itself")


def _event_hooks(
    settings: Settings, name: str, channels_factory: Callable[[Settings], dict[str, Any]], clock: Callable[[], float]
) -> tuple[StartupShutdown, StartupShutdown]:
    """The event worker's ``on_startup`` and ``on_shutdown``: the runtime and its heartbeat."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        # arq's own connection returns bytes; the stores work with str.
        redis = connect(settings)
        await load_scripts(redis)
        ctx["hub_redis"] = redis
        await migrate_optout_keys(redis, settings.secret_key)  # opt-outs of an older release
        ctx["runtime"] = Runtime(
            settings, redis, channels_factory(settings), enqueue=ctx["redis"].enqueue_job, clock=clock
        )
        ctx["heartbeat"] = asyncio.get_running_loop().create_task(_heartbeat(redis, name))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await _stop_heartbeat(ctx)
        runtime: Runtime | None = ctx.get("runtime")
        if runtime is not None:
            await runtime.close()
        redis = ctx.get("hub_redis")
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.zrem(keys.WORKER_HEARTBEAT, name)
            await redis.aclose()

    return on_startup, on_shutdown


def create_worker(
    settings: Settings,
    *,
    burst: bool = False,
    handle_signals: bool = True,
    channels_factory: Callable[[Settings], dict[str, Any]] = build_channels,
    clock: Callable[[], float] = time.time,
) -> Worker:
    """The event worker. ``clock`` is the delivery policy's clock (quiet hours, expiry, limits);
    tests pass a fixed one."""
    require_redis(settings)
    wcfg = settings.worker
    on_startup, on_shutdown = _event_hooks(
        settings, f"{socket.gethostname()}:{os.getpid()}:{id(settings):x}", channels_factory, clock
    )
    return HubWorker(
        functions=[
            func(process_event, name=jobs.PROCESS_EVENT, max_tries=wcfg.max_tries + 5),
            func(send_message, name=jobs.SEND_MESSAGE, max_tries=10),
            func(close_relay_job, name=jobs.CLOSE_RELAY_SESSION, max_tries=5),
        ],
        queue_name=wcfg.queue_name,
        redis_settings=arq_redis_settings(settings),
        burst=burst,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        # On SIGTERM: no new jobs; running ones get the grace period, then are cancelled, and
        # arq puts a cancelled job back in the queue at once (its in-progress key is deleted),
        # for any worker to run again. The message log's claims keep a re-run from sending twice.
        job_completion_wait=_grace(settings),
        max_jobs=wcfg.max_jobs,
        # arq's own limit stays above the hub's (which cancels cleanly and retries); it also sets
        # how long a killed worker's jobs wait before another worker takes them (+10 s).
        job_timeout=wcfg.job_timeout + min(30.0, max(5.0, wcfg.job_timeout)),
        keep_result=0,  # results are not read; the message log is the record
        poll_delay=0.05,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        log_results=False,
        # No timeout of its own: a longer one would raise arq's in-progress lease for every job.
        cron_jobs=[cron(sweep_messages, second={7}, run_at_startup=False)],
    )

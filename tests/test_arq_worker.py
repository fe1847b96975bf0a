"""HubWorker (hub.arq_worker): a queued job wakes the worker at once instead of waiting for its
poll; a poll leaves the jobs this worker runs alone; jobs keep arq's semantics (a job id runs
once, a failed job is not retried, a Retry defers it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import func

from hub import jobs
from hub.arq_worker import START_JOBS, FreeRetry, HubWorker
from tests.test_redis_faults import CuttingProxy

QUEUE = "test:arq-worker"
POLL = 30.0  # far longer than any test waits: a job that starts soon was woken, not polled


async def _commands(client: aioredis.Redis, name: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def _until(check: Any, *, limit: float = 20.0) -> None:
    """Wait until ``check()`` is true (a safety bound only; the condition is what is awaited)."""
    async with asyncio.timeout(limit):
        while not await check():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(
    redis_url: str, *functions: Any, poll: float = POLL, max_jobs: int = 10, worker_url: str | None = None
) -> AsyncIterator[tuple[HubWorker, aioredis.Redis]]:
    """A HubWorker on ``QUEUE`` (reaching Redis at ``worker_url``, if given) and a client of Redis."""
    worker = HubWorker(
        functions=list(functions),
        queue_name=QUEUE,
        redis_settings=RedisSettings.from_dsn(worker_url or redis_url),
        max_jobs=max_jobs,
        handle_signals=False,
        poll_delay=poll,
        keep_result=0,
        job_serializer=jobs.job_serializer,
        job_deserializer=jobs.job_deserializer,
    )
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    task = asyncio.ensure_future(worker.main())

    try:
        await _until(lambda: _listening(client))
        yield worker, client
        # Jobs settle after they return: let them, before the worker stops.
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()
        await client.aclose()


async def _listening(client: aioredis.Redis) -> bool:
    counts = await client.pubsub_numsub(jobs.wake_channel(QUEUE))
    return bool(counts and counts[0][1] >= 1)


async def _enqueue(client: aioredis.Redis, name: str, job_id: str, *args: Any) -> None:
    await jobs.enqueue(client, QUEUE, name, args, job_id=job_id, at_ms=0, expires_ms=60_000)


async def test_a_queued_job_starts_at_once_not_at_the_next_poll(redis_url: str) -> None:
    ran: list[str] = []
    done = asyncio.Event()

    async def note(ctx: dict[str, Any], label: str) -> None:
        ran.append(label)
        done.set()

    async with running(redis_url, func(note, name="note")) as (_, client):
        for label in ("first", "second"):  # the second comes after the first poll for sure
            done.clear()
            await _enqueue(client, "note", f"job-{label}", label)
            await asyncio.wait_for(done.wait(), 10)  # well within the 30 s poll: woken
    assert ran == ["first", "second"]


async def test_a_poll_leaves_the_jobs_this_worker_runs_alone(redis_url: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def long(ctx: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    async with running(redis_url, func(long, name="long")) as (_, client):
        await _enqueue(client, "long", "job-long")
        await asyncio.wait_for(started.wait(), 10)
        polls, scripts = await _commands(client, "zrangebyscore"), await _commands(client, "evalsha")
        for n in range(1, 4):  # wake the worker: each wake-up is a poll that finds the running job

            async def polled(n: int = n) -> bool:
                return await _commands(client, "zrangebyscore") >= polls + n

            await client.publish(jobs.wake_channel(QUEUE), "1")
            await _until(polled)
        assert await _commands(client, "evalsha") == scripts  # the running job was not examined again
        release.set()

        async def finished() -> bool:
            return await client.zcard(QUEUE) == 0

        await _until(finished)


async def test_jobs_keep_arqs_semantics(redis_url: str) -> None:
    tries: dict[str, int] = {}

    async def flaky(ctx: dict[str, Any], label: str) -> str:
        tries[label] = ctx["job_try"]
        if label == "retry" and ctx["job_try"] == 1:
            raise Retry(defer=0.01)
        if label == "fail":
            raise ValueError("for good")
        return label

    # The production poll: a deferred job comes due between wake-ups, and a poll finds it.
    async with running(redis_url, func(flaky, name="flaky"), poll=0.05) as (worker, client):
        for label in ("ok", "retry", "fail"):
            await _enqueue(client, "flaky", f"job-{label}", label)

        async def empty() -> bool:
            return tries.get("retry") == 2 and await client.zcard(QUEUE) == 0

        await _until(empty)
        assert tries == {"ok": 1, "retry": 2, "fail": 1}  # a failure is not retried; a Retry is
        assert await client.keys("arq:*") == []  # every job's keys gone: lease, tries, payload
        assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (2, 1, 1)


async def test_a_start_whose_answer_redis_lost_gives_its_slot_back(redis_url: str) -> None:
    """The connection breaks right after START_JOBS reached Redis: the worker gets no answer, so
    it must give back the slot it took, or each outage would leave it fewer until it took no
    job at all (here it has one)."""
    target = urlsplit(redis_url)
    trigger = hashlib.sha1(START_JOBS.encode()).hexdigest().encode()
    proxy = CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379, 0.5, trigger)
    await proxy.start()
    ran: list[str] = []
    done = asyncio.Event()

    async def note(ctx: dict[str, Any], label: str) -> None:
        ran.append(label)
        done.set()

    try:
        proxy_url = f"redis://127.0.0.1:{proxy.port}/0"
        async with running(redis_url, func(note, name="note"), max_jobs=1, worker_url=proxy_url) as (
            worker,
            client,
        ):
            proxy.armed = True
            await _enqueue(client, "note", "job-cut", "cut")  # its start's answer is lost

            async def given_back() -> bool:
                return proxy.cuts == 1 and worker.job_counter == 0

            await _until(given_back)
            await _until(lambda: _listening(client))  # subscribed again after the outage
            await _enqueue(client, "note", "job-after", "after")
            await asyncio.wait_for(done.wait(), 10)  # the one slot takes it: it was given back
            assert ran == ["after"]  # the cut job waits out its lease (arq's), it is not lost
            assert await client.exists("arq:in-progress:job-cut") == 1
    finally:
        await proxy.close()


async def test_two_workers_on_one_queue_run_each_job_once(redis_url: str) -> None:
    """Both are woken by every job and race for it: the lease START_JOBS takes is the one lock."""
    ran: list[str] = []

    async def note(ctx: dict[str, Any], label: str) -> None:
        await asyncio.sleep(0)
        ran.append(label)

    async with (
        running(redis_url, func(note, name="note"), poll=0.05) as (_, client),
        running(redis_url, func(note, name="note"), poll=0.05),
    ):
        labels = [f"j{i}" for i in range(60)]
        for label in labels:
            await _enqueue(client, "note", f"job-{label}", label)

        async def all_ran() -> bool:
            return len(ran) >= len(labels) and await client.zcard(QUEUE) == 0

        await _until(all_ran)
    assert sorted(ran) == sorted(labels)  # each once: none lost, none twice


async def test_a_free_retry_spends_no_try(redis_url: str) -> None:
    """A job that meets a failover (hub.worker: NotReplicated) waits as often as it must: more
    FreeRetry rounds than the function's max_tries, and it still runs, on its first try."""
    seen: list[int] = []

    async def unlucky(ctx: dict[str, Any]) -> str:
        seen.append(ctx["job_try"])
        if len(seen) <= 4:
            raise FreeRetry(defer=0.01)
        return "ran"

    async with running(redis_url, func(unlucky, name="unlucky", max_tries=2), poll=0.05) as (worker, client):
        await _enqueue(client, "unlucky", "job-unlucky")

        async def finished() -> bool:
            return len(seen) == 5 and await client.zcard(QUEUE) == 0

        await _until(finished)
        assert seen == [1, 1, 1, 1, 1]  # every round its first try; max_tries 2 never reached
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)

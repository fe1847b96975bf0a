"""arq's worker with a leaner job lifecycle, and woken by new jobs instead of waiting for its poll.

arq (0.28) takes a job in four round trips (WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC),
reads it in a fifth (GET, INCR, EXPIRE) and finishes it in a sixth; and every poll examines
again, that way, each job this worker is already running (they stay in the queue until they
finish). Per job that was about 20 Redis commands and 7 round trips; for the hub's ~5.5 jobs
per event (the event, its webhook deliveries), a third of all the commands an event cost.

``HubWorker`` keeps arq's queue format, keys and semantics (a job id runs once at a time, its
in-progress key is its lease, ``Retry`` defers it, a cancelled job runs again, tries are
counted and capped, cron jobs), so jobs queued by either run on the other. What changes:

- a poll skips the jobs this worker is running, and takes all the others it has room for in
  one Lua call (``START_JOBS``: lease, try count and payload for each);
- a finished job is settled in one Lua call (``FINISH_JOB``);
- queuing a job publishes on the queue's wake-up channel (``wake_channel``): the worker polls
  at once instead of up to ``poll_delay`` later (the poll stays, for jobs that come due);
- a job's start and end are logged at debug level, by id (arq's own lines carry the job's
  arguments, which hold customers' contact data).

It also rides out a Redis outage: a poll that cannot reach Redis is logged and tried again a
moment later, instead of stopping the worker with its jobs in flight. Jobs that were running
finish, writing their outcomes once Redis is back (see hub.durable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import Retry
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, keep_cronjob_progress, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import RetryJob, Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from .jobs import wake_channel
from .redis_batch import BatchingRedis

__all__ = ["FINISH_JOB", "START_JOBS", "FreeRetry", "HubWorker"]

log = logging.getLogger(__name__)

# Redis gone: redis-py raises WatchError, not ConnectionError, when the connection breaks
# while keys are watched.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, WatchError, ConnectionError)

# Take the jobs named (in queue order) that are due and not running anywhere: lease each (its
# in-progress key), count the try, and return id, score, try and payload of each taken.
# KEYS: the queue. ARGV: now (ms), lease (ms), in-progress, retry and job key prefixes, ids...
START_JOBS = """
local out = {}
local now = tonumber(ARGV[1])
for i = 6, #ARGV do
  local id = ARGV[i]
  local lease = ARGV[3] .. id
  if redis.call('EXISTS', lease) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', lease, ARGV[2], '1')
      local tries = redis.call('INCR', ARGV[4] .. id)
      redis.call('EXPIRE', ARGV[4] .. id, 88400)
      out[#out + 1] = id
      out[#out + 1] = score
      out[#out + 1] = tries
      out[#out + 1] = redis.call('GET', ARGV[5] .. id) or ''
    end
  end
end
return out
"""

# Settle a job: "done" (finished or failed for good: gone from the queue, its keys deleted; a
# cron job keeps its lease ``keep`` ms so no other worker runs the same tick), "defer" (a
# Retry: its score moves by ``incr`` ms), "refund" (a ``FreeRetry``: deferred, and the try it
# spent given back) or "again" (cancelled: run again as soon as polled).
# KEYS: the queue. ARGV: id, mode, incr (ms), keep (ms), in-progress, retry and job key prefixes.
FINISH_JOB = """
local id = ARGV[1]
local lease = ARGV[5] .. id
if ARGV[2] == 'done' then
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', lease, ARGV[4])
    redis.call('DEL', ARGV[6] .. id, ARGV[7] .. id)
  else
    redis.call('DEL', lease, ARGV[6] .. id, ARGV[7] .. id)
  end
  redis.call('ZREM', KEYS[1], id)
  return 1
end
if ARGV[2] == 'defer' or ARGV[2] == 'refund' then redis.call('ZINCRBY', KEYS[1], ARGV[3], id) end
if ARGV[2] == 'refund' and tonumber(redis.call('GET', ARGV[6] .. id) or '0') > 0 then
  redis.call('DECR', ARGV[6] .. id)
end
redis.call('DEL', lease)
return 1
"""

_PREFIXES = (in_progress_key_prefix, retry_key_prefix, job_key_prefix)


class FreeRetry(Retry):
    """A retry that spends none of the job's tries: the job could not run for a reason that is
    not its own (with Sentinel, no replica acknowledged its writes yet during a failover), so
    it waits and runs again however long that lasts, instead of running out of tries."""


class HubWorker(Worker):
    """arq's worker with the lifecycle above (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake = asyncio.Event()
        self._start_script: Any = None
        self._finish_script: Any = None
        self._saturated = False  # the last poll found more due jobs than free slots
        self._wake_pending = False

    # -- the loop ------------------------------------------------------------------------------
    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        # Jobs end all the time under load: their settling shares round trips (hub.redis_batch).
        lean = BatchingRedis(connection_pool=self.pool.connection_pool)
        self._start_script = lean.register_script(START_JOBS)
        self._finish_script = lean.register_script(FINISH_JOB)
        await lean.script_load(START_JOBS)  # not a NOSCRIPT for each of the first jobs
        await lean.script_load(FINISH_JOB)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            while True:
                self._wake.clear()
                await self._poll_iteration()
                if self.burst and await self._burst_over():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_delay_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _burst_over(self) -> bool:
        """arq's burst mode: stop once the queue is empty (or the job budget is spent)."""
        if 0 <= self.max_burst_jobs <= self._jobs_started() or await self.pool.zcard(self.queue_name) == 0:
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def _listen(self) -> None:
        """Wake the loop whenever a job is queued (its enqueuer publishes); resubscribe after an
        outage (meanwhile the poll still finds every job)."""
        while True:
            pubsub = self.pool.pubsub()
            try:
                await pubsub.subscribe(wake_channel(self.queue_name))
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("wake-up channel lost (%s); subscribing again", e)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except UNREACHABLE as e:
            running = sum(not t.done() for t in self.tasks.values())
            log.warning(
                "Redis unreachable (%s); polling again in 0.5 s (jobs: %d counted, %d running)",
                e,
                self.job_counter,
                running,
            )
            await asyncio.sleep(0.5)
        except Exception:
            # Whatever else a poll meets (a job's own error surfacing here, say), the worker
            # must go on taking jobs: a poll loop that ends leaves the process alive but idle.
            log.exception("worker poll failed; polling again in 0.5 s")
            await asyncio.sleep(0.5)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._saturated and not self._wake_pending:
            # A slot is free and jobs are waiting: poll soon, a few ms later so the slots that
            # free up meanwhile are filled by the same poll.
            self._wake_pending = True
            self.loop.call_later(0.005, self._wake_soon)

    def _wake_soon(self) -> None:
        self._wake_pending = False
        self._wake.set()

    # -- taking jobs -----------------------------------------------------------------------------
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        running = {i for i, t in self.tasks.items() if not t.done()}
        due = [j.decode() for j in job_ids if j.decode() not in running]
        room = self.max_jobs - self.job_counter
        self._saturated = len(due) > room
        wanted = due[:room]
        if not wanted:
            return
        # Slots are taken before Redis is asked, and given back for every job not taken, the
        # Redis call failing included: an outage must not leave the worker with fewer slots.
        for _ in wanted:
            await self.sem.acquire()
            self.job_counter += 1
        taken: list[Any] = []
        try:
            lease_ms = int(self.in_progress_timeout_s * 1000)
            taken = await self._start_script(
                keys=[self.queue_name], args=[timestamp_ms(), lease_ms, *_PREFIXES, *wanted]
            )
        finally:
            for _ in range(len(wanted) - len(taken) // 4):
                self.job_counter -= 1
                self.sem.release()
        for i in range(0, len(taken), 4):
            job_id = taken[i].decode()
            score, tries, raw = int(float(taken[i + 1])), int(taken[i + 2]), taken[i + 3]
            task = self.loop.create_task(self._run(job_id, score, tries, raw or None))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    # -- running one -------------------------------------------------------------------------------
    async def _run(self, job_id: str, score: int, job_try: int, raw: bytes | None) -> None:
        function_name = "<unknown>"
        if raw is None:
            log.warning("job %s expired", job_id)
            return await self._settle(job_id, "done", failed=True)
        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                raw, deserializer=self.job_deserializer
            )
        except SerializationError:
            log.exception("deserializing job %s failed", job_id)
            return await self._settle(job_id, "done", failed=True)
        function = self.functions.get(function_name)
        if function is None:
            log.warning("job %s, function %r not found", job_id, function_name)
            return await self._settle(job_id, "done", failed=True)
        if enqueue_job_try and enqueue_job_try > job_try:
            job_try = enqueue_job_try
            await self.pool.setex(retry_key_prefix + job_id, 88400, str(job_try))
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            log.warning("job %s (%s): max %d tries exceeded", job_id, function_name, max_tries)
            return await self._settle(job_id, "done", failed=True)
        keep = keep_cronjob_progress if hasattr(function, "next_run") else 0
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_time_ms),
            "score": score,
        }
        timeout = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        log.debug("job %s (%s) try %d starts", job_id, function_name, job_try)
        task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))
        self.job_tasks[job_id] = task
        try:
            await asyncio.wait_for(task, timeout)
        except Retry as e:
            self.jobs_retried += 1
            incr = e.defer_score + (timestamp_ms() - score) if e.defer_score else 0
            mode = "refund" if isinstance(e, FreeRetry) else "defer" if incr else "again"
            return await self._settle(job_id, mode, incr=incr)
        except (asyncio.CancelledError, RetryJob):
            # Shutdown past its grace, or arq's RetryJob: the job runs again (its lease goes).
            self.jobs_retried += 1
            return await self._settle(job_id, "again")
        except Exception as e:
            log.exception("job %s (%s) failed: %s", job_id, function_name, type(e).__name__)
            return await self._settle(job_id, "done", failed=True)
        finally:
            self.job_tasks.pop(job_id, None)
        self.jobs_complete += 1
        log.debug("job %s (%s) done", job_id, function_name)
        await self._settle(job_id, "done", keep=keep)

    async def _settle(self, job_id: str, mode: str, *, incr: int = 0, keep: float = 0, failed: bool = False) -> None:
        if failed:
            self.jobs_failed += 1
        args = [job_id, mode, incr, int(keep * 1000), *_PREFIXES]
        await asyncio.shield(self._finish_script(keys=[self.queue_name], args=args))

"""Writes that must outlast a Redis outage or the job that started them.

Once a provider has answered, only Redis can lose the outcome, which would leave the message
``sending`` and, after its lease, ``unknown``. ``outlasting`` asks again through a short outage;
``Background`` runs a write in a task of its own that goes on after its job has ended (timed out
or cancelled), for as long as the sending lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Background", "outlasting"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def outlasting(call: Callable[[], Awaitable[T]], *, patience: float = 10.0) -> T:
    """``call()``, tried again through a Redis outage of up to ``patience`` seconds."""
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


class Background:
    """The writes outliving their jobs (claims given back, outcomes being recorded)."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self.pending.add(task)
        task.add_done_callback(self._reap)
        return task

    async def run(self, work: Awaitable[T], *, inline: float) -> T:
        """Run ``work`` in a task of its own and wait up to ``inline`` seconds for it; past that
        (or if this job is cancelled) it goes on in the background and this raises."""
        task = self.spawn(work)
        try:
            return await asyncio.wait_for(asyncio.shield(task), inline)
        except TimeoutError as e:
            raise RedisConnectionError("Redis unreachable; the write goes on in the background") from e

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a background write failed: %r", task.exception())

    async def settle(self) -> None:
        """Wait for every write still running."""
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)

    async def close(self, grace: float) -> None:
        """Let the writes finish within ``grace`` seconds, and say which did not."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.settle()), grace)
        for task in list(self.pending):
            if not task.done():
                log.warning("shutting down with a write still waiting for Redis; its message may end unknown: %r", task)
                task.cancel()

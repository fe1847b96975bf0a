"""A Redis client that sends the commands its callers issue at the same moment as one pipeline.

A worker runs up to ``worker.max_jobs`` jobs at once, and each awaits its own Redis calls: a
claim here, an outcome there, a webhook created, a job settled. Sent one by one, each call is a
socket write, a read and a trip through the event loop, for the client and for Redis; under
load those round trips were the largest share of a worker's CPU. ``BatchingRedis`` queues every
command issued during one pass of the event loop and sends the lot in one write on one
connection, then hands each caller its own reply (or its own error): what ioredis calls
auto-pipelining. Nothing else changes for the caller:

- the commands are independent and run in the order they were issued (a pipeline without
  MULTI); a caller's own calls are awaited one after the other, so they never share a batch;
- an error reply (``NOSCRIPT`` included, which makes a script load itself and run again) goes
  to the command that caused it only; a broken connection fails every command of its batch,
  exactly as it would have failed each of them alone;
- a batch of one is sent as a plain command; ``pipeline()``, ``pubsub()`` and transactions use
  their own connections, as before; commands that block or act on their connection (``WAIT``
  counts the writes of the connection it is sent on) are never batched: a write that ``WAIT``
  must cover goes in one ``pipeline()`` with it.

Under light load a batch is usually one command, so latency does not change; under a burst a
hundred jobs' calls share a round trip.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["BatchingRedis"]

# Commands that block, or act on the connection they are sent on (WAIT counts the writes of its
# own connection), go alone, as with a plain client.
_ALONE = frozenset(
    {
        "WAIT",
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "BZPOPMIN",
        "BZPOPMAX",
        "XREAD",
        "XREADGROUP",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "MONITOR",
        "WATCH",
        "UNWATCH",
        "MULTI",
        "EXEC",
        "DISCARD",
        "SELECT",
        "CLIENT",
        "AUTH",
        "HELLO",
        "QUIT",
        "RESET",
    }
)

_Pending = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
_CLOSE_WAIT = 5.0  # seconds aclose() waits for batches in flight before cancelling them


class BatchingRedis(Redis):
    """``redis.asyncio.Redis`` with auto-pipelining (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.single_connection_client or self.connection is not None or str(args[0]).upper() in _ALONE:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, options, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close after the batches in flight: one sent after the pool was disconnected would take
        a new connection that nothing ever closes (a worker stopped mid-job did exactly that).
        A batch still unanswered after ``_CLOSE_WAIT`` seconds is cancelled, which closes its
        connection."""
        while self._flush_scheduled or self._sending:
            if not self._sending:
                await asyncio.sleep(0)  # the scheduled flush runs and starts its batch
                continue
            _, late = await asyncio.wait(set(self._sending), timeout=_CLOSE_WAIT)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await super().aclose(close_connection_pool)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        batch = [p for p in batch if not p[2].done()]  # callers cancelled meanwhile send nothing
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            args, options, future = batch[0]
            try:
                result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except BaseException as e:
                _fail(future, e)
            else:
                _resolve(future, result)
            return
        pool = self.connection_pool
        try:
            conn = await pool.get_connection()
        except BaseException as e:  # Redis unreachable: every caller hears it, none waits forever
            for _, _, future in batch:
                _fail(future, e)
            return
        try:
            await conn.send_packed_command(conn.pack_commands([args for args, _, _ in batch]))
            for args, options, future in batch:
                try:
                    result = await self.parse_response(conn, args[0], **options)
                except ResponseError as e:  # this command's own error: the others go on
                    _fail(future, e)
                else:
                    _resolve(future, result)
        except BaseException as e:
            await conn.disconnect()
            for _, _, future in batch:
                _fail(future, e)
        finally:
            await pool.release(conn)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        if isinstance(error, asyncio.CancelledError):
            error = ConnectionError("the batch this command was sent in was cancelled")
        future.set_exception(error)

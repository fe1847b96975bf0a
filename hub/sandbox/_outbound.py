"""Outbound HTTP from the sandbox (Twilio status callbacks, inbound SMS webhooks).

Owns one lazily created ``aiohttp.ClientSession`` and the background tasks that use it; both
are bound to the event loop the sandbox runs in and are torn down by ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp

__all__ = ["Outbound"]

logger = logging.getLogger(__name__)


class Outbound:
    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("sandbox is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str | None = None) -> asyncio.Task[None] | None:
        """Run ``coro`` in the background, keeping a reference until it finishes."""
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("sandbox background task %s failed", task.get_name(), exc_info=task.exception())

    async def post_form(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, str, str]:
        """POST ``params`` form-encoded; return (status, content type, body text)."""
        session = self._get_session()
        async with session.post(url, data=dict(params), headers=dict(headers)) as response:
            body = await response.text()
            return response.status, response.content_type, body

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

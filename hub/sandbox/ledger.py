"""The sandbox ledger: an in-memory record of everything the provider fakes accepted.

Each accepted SMS (per message), e-mail (one entry per envelope recipient) and push message
becomes a ``LedgerEntry``. Requests rejected by validation or failed by an injected fault are
not recorded. Entries are kept in arrival order; ``GET {prefix}/messages`` serves
``LedgerEntry.to_dict()`` of them, newest last.

Tests can wait for entries to arrive with ``await ledger.wait_for(...)``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from ..masking import mask
from ._formats import rfc3339, utcnow

__all__ = ["CHANNELS", "Channel", "Ledger", "LedgerEntry"]

logger = logging.getLogger(__name__)

Channel = Literal["sms", "email", "push", "whatsapp"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)


@dataclass
class LedgerEntry:
    """One message received by a fake. Fields that do not apply to the channel are ``None``."""

    channel: Channel
    to: str | None
    from_: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    push_title: str | None = None
    push_body: str | None = None
    push_data: dict[str, str] | None = None
    provider_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served by ``GET {prefix}/messages``."""
        return {
            "id": self.id,
            "channel": self.channel,
            "to": self.to,
            "from": self.from_,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "push_title": self.push_title,
            "push_body": self.push_body,
            "push_data": dict(self.push_data) if self.push_data is not None else None,
            "received_at": rfc3339(self.received_at),
            "provider_id": self.provider_id,
            "meta": dict(self.meta),
        }


class Ledger:
    """Arrival-ordered store of ``LedgerEntry`` objects."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._waiters: list[asyncio.Future[None]] = []

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        self._entries.append(entry)
        logger.debug("ledger: %s to %s (%s)", entry.channel, mask(entry.channel, entry.to), entry.id)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return entry

    def entries(
        self,
        *,
        to: str | None = None,
        channel: str | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Entries in arrival order, optionally filtered by exact recipient and channel.

        ``limit`` keeps the last N matches.
        """
        found = [e for e in self._entries if (to is None or e.to == to) and (channel is None or e.channel == channel)]
        if limit is not None:
            found = found[-limit:] if limit > 0 else []
        return found

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries))

    async def wait_for(
        self,
        predicate: Callable[[LedgerEntry], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[LedgerEntry]:
        """Wait until at least ``count`` entries match ``predicate``; return the matches.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [e for e in self._entries if predicate is None or predicate(e)]
            if len(matches) >= count:
                return matches
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"ledger: {len(matches)} of {count} expected entries after {timeout}s")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                continue
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

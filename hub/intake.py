"""Event intake: register validated events and queue them for the worker, in one step.

``accept_events`` is the one way an event enters the hub, whoever received it: ``POST
/v1/events`` and its batch form (``hub.api_events``) and the vendors' webhooks
(``hub.adapters``). Registering and queueing happen atomically in the store, so an event is
either known and queued or neither; a repeat of a known event is a duplicate, and the same
``event_id`` with another payload is a conflict.

With Redis Sentinel, the answer waits until the replicas hold the events
(``hub.redis_conn.replicated``), so a failover cannot lose an event the sender was told is
accepted; if they do not confirm in time, ``NotReplicated`` makes it a 503 and the sender posts
again: the repeat is a duplicate, and it waits for the replicas in its turn.
"""

from __future__ import annotations

from typing import Any

from . import metrics
from .clock import now_iso
from .redis_conn import replicated
from .schema import Event
from .store import HubStore

__all__ = ["accept_events", "count_invalid"]


async def accept_events(store: HubStore, source: str, events: list[Event]) -> list[str]:
    """Register and enqueue events atomically; returns accepted | duplicate | conflict per event."""
    received_at = now_iso()
    items = [(source, e.event_id, e.digest(), {**e.to_job(), "received_at": received_at}) for e in events]
    states = await store.accept_events(items, received_at)
    # Duplicates too: the first post's write may be on the primary alone (its wait timed out).
    await replicated(store.redis, store.settings)
    answers = ["conflict" if s == "conflict" else "accepted" if s == "new" else "duplicate" for s in states]
    for event, answer in zip(events, answers, strict=True):
        labels = (metrics.event_type(event.type), source)
        if answer == "accepted":
            metrics.EVENTS_ACCEPTED.labels(*labels).inc()
        elif answer == "duplicate":
            metrics.EVENTS_DUPLICATE.labels(*labels).inc()
        else:
            metrics.EVENTS_REJECTED.labels(*labels, "conflict").inc()
    return answers


def count_invalid(source: str, payload: Any) -> None:
    """Count an event refused by validation, under its type when it names a known one."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    metrics.EVENTS_REJECTED.labels(metrics.event_type(kind), source, "invalid").inc()

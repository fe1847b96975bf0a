"""The arq jobs the hub queues: their names, ids, wire format, and the one way to queue one by hand.

Every module that queues a job takes its name and id from here; none reaches up into the worker
(hub.worker only registers the functions under these names). Most jobs are written by hand,
without arq's client: the API registers and queues an event in one Lua step
(lua_log.ACCEPT_EVENT), a webhook delivery is created and queued the same way
(lua_records.CREATE_WEBHOOK), and a replay or a relay closing is queued by ``enqueue`` (or
``queue_on``, inside a caller's transaction). All of them write arq's own format
(``serialize_job`` with the JSON serializer below), so jobs written by an earlier release still
run. A message's own jobs (held, retried, escalated) go through arq's ``enqueue_job``
(``send_later``), which queues a job id once.

Job ids:

- ``{source}:{event_id}``                an event (``process_event``);
- ``msg:{message_id}:{due_ms}[:...]``    a message's own job (``send_message``), suffixed when a
  second job for the same due time must not be mistaken for the first (a sweep, an early run,
  a claim given back, a replay, a call cut off);
- ``relay-close:{session_id}``           the closing of a relay session;
- ``{webhook delivery id}``              a webhook delivery, on the webhook queue.

Jobs are JSON, not pickle: whoever can write to Redis must not be able to run code in a worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

__all__ = [
    "CLOSE_RELAY_SESSION",
    "DELIVER_WEBHOOK",
    "PROCESS_EVENT",
    "SEND_MESSAGE",
    "Enqueue",
    "MessageJob",
    "MessageJobKind",
    "enqueue",
    "event_job_id",
    "job_deserializer",
    "job_key",
    "job_serializer",
    "message_job_id",
    "message_jobs_pattern",
    "payload",
    "queue_on",
    "relay_close_job_id",
    "result_key",
    "send_later",
    "wake_channel",
]

PROCESS_EVENT = "process_event"
SEND_MESSAGE = "send_message"
CLOSE_RELAY_SESSION = "close_relay_session"
DELIVER_WEBHOOK = "deliver_webhook"

# arq's ``ArqRedis.enqueue_job`` (or anything called the same way): a message's own jobs.
Enqueue = Callable[..., Awaitable[Any]]


class MessageJobKind(StrEnum):
    """Why a message has a job of its own (the ``kind`` argument of ``send_message``)."""

    DEFERRED = "deferred"  # quiet hours, collapsing, a rate limit
    RETRY = "retry"  # a transient failure, a claim given back, a send in doubt
    REPLAY = "replay"  # an operator sends a dead letter again
    ESCALATE = "escalate"  # an SMS standing in for a push the app did not confirm


def job_serializer(value: dict[str, Any]) -> bytes:
    return json.dumps(value, default=repr, separators=(",", ":")).encode()


def job_deserializer(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value


def wake_channel(queue: str) -> str:
    """The channel that wakes the workers of ``queue`` (hub.arq_worker): whoever queues a job due
    now publishes on it, so the job starts at once instead of at the next poll."""
    return f"hub:wake:{queue}"


def job_key(job_id: str) -> str:
    """arq's record of a queued job (its serialized payload)."""
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    """arq's record of a finished job's result (the hub keeps none, but arq checks for it)."""
    return result_key_prefix + job_id


def event_job_id(source: str, event_id: str) -> str:
    """One job per (source, event_id): a duplicate event is queued once."""
    return f"{source}:{event_id}"


def message_job_id(message_id: str, *parts: int | str) -> str:
    return ":".join(["msg", message_id, *(str(p) for p in parts)])


def message_jobs_pattern(message_id: str) -> str:
    """A SCAN pattern matching every job of one message (erasure drops them)."""
    return f"msg:{message_id}:*"


def relay_close_job_id(session_id: str) -> str:
    return f"relay-close:{session_id}"


def payload(name: str, args: Sequence[Any], *, enqueued_ms: int | None = None) -> bytes:
    """A job as arq stores it (``arq:job:{id}``), for writing by hand or from Lua."""
    when = int(time.time() * 1000) if enqueued_ms is None else enqueued_ms
    return serialize_job(name, tuple(args), {}, None, when, serializer=job_serializer)


def queue_on(
    pipe: Pipeline,
    queue: str,
    name: str,
    args: Sequence[Any],
    *,
    job_id: str,
    at_ms: int,
    expires_ms: int,
    enqueued_ms: int | None = None,
) -> None:
    """Add the writes that queue a job, due at ``at_ms``, to ``pipe`` (for a caller that changes
    other keys in the same transaction); one already queued under ``job_id`` is replaced."""
    pipe.set(job_key(job_id), payload(name, args, enqueued_ms=enqueued_ms), px=max(1, expires_ms))
    pipe.zadd(queue, {job_id: at_ms})
    if at_ms <= int(time.time() * 1000):
        pipe.publish(wake_channel(queue), "1")


async def enqueue(
    redis: Redis,
    queue: str,
    name: str,
    args: Sequence[Any],
    *,
    job_id: str,
    at_ms: int,
    expires_ms: int,
    enqueued_ms: int | None = None,
) -> None:
    """Queue a job by hand (see ``queue_on``), in a transaction of its own."""
    async with redis.pipeline(transaction=True) as pipe:
        queue_on(pipe, queue, name, args, job_id=job_id, at_ms=at_ms, expires_ms=expires_ms, enqueued_ms=enqueued_ms)
        await pipe.execute()


@dataclass(frozen=True)
class MessageJob:
    """The arguments of ``send_message``: the event, the message's spec (JSON), when it is due
    (ms, on the policy clock) and why it has a job."""

    source: str
    event: dict[str, Any]
    spec: dict[str, Any]
    due_ms: int
    kind: MessageJobKind

    def args(self) -> tuple[str, dict[str, Any], dict[str, Any], int, str]:
        return (self.source, self.event, self.spec, self.due_ms, self.kind.value)


async def send_later(enqueue_job: Enqueue, job: MessageJob, *, job_id: str, defer_by: float | None = None) -> bool:
    """Queue a message's own job through arq (a job id is queued once); False when a job with
    that id is queued already or has just run."""
    queued = await enqueue_job(SEND_MESSAGE, *job.args(), _job_id=job_id, _defer_by=defer_by)
    return queued is not None

"""Redis access for events, deliveries and the message log (keys and scripts in ``keys``).

Errors: none of its own; Redis errors propagate (the API answers 503, arq retries the job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import Redis

from . import keys
from .config import Settings
from .masking import mask_numbers

__all__ = ["FRESH", "PENDING", "HubStore", "MessageRecord", "job_id_of", "now_iso"]

DAY = 86_400
HOUR_MS = 3_600_000
# Statuses from which a message may still change: it waits (deferred), failed transiently and
# will retry, or is being replayed. A missing record may always be created. The event's own job
# takes only new or deferred messages (FRESH): a transient one belongs to its retry job.
PENDING = ",transient,deferred,replaying,"
FRESH = ",deferred,"


# Fields an outcome clears: a sent message keeps no error or retry payload; a failed or unknown
# one no retry payload.
_CLEARS = {"accepted": ("error", "error_code", "job"), "failed": ("job",), "unknown": ("job",)}


@dataclass(frozen=True)
class _Outcome:
    """One outcome write: the record's fields, its history entry, the status index score ('' when
    the status is not indexed) and the fields it clears."""

    fields: dict[str, str]
    entry: str
    score: str
    drop: list[str]

    @classmethod
    def of(
        cls,
        message_id: str,
        status: str,
        provider_id: str | None,
        error: str | None,
        error_code: str | None,
        extra: dict[str, str] | None,
        due_ms: int | None,
        at: str,
    ) -> _Outcome:
        fields = {"status": status, "updated_at": at, **(extra or {})}
        if provider_id:
            fields["provider_id"] = provider_id
        if error is not None:
            fields["error"] = mask_numbers(error)
        if error_code is not None:
            fields["error_code"] = error_code
        if due_ms is not None:
            fields["due_at"] = str(due_ms)
        entry: dict[str, Any] = {"status": status, "at": at}
        if error:
            entry["detail"] = mask_numbers(error)
        score = ""
        if status in keys.INDEXED_STATUSES:
            score = str(_now_ms() if due_ms is None else due_ms)
        return cls(fields, json.dumps(entry), score, list(_CLEARS.get(status, ())))


def job_id_of(source: str, event_id: str) -> str:
    """The arq job id of an event: one job per (source, event_id)."""
    return f"{source}:{event_id}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@dataclass(frozen=True)
class MessageRecord:
    """What the log stores about one message before it is sent."""

    id: str
    event_id: str
    source: str
    delivery_id: str
    customer_id: str
    milestone: str
    channel: str
    to: str
    template: str
    locale: str
    via_fallback: bool = False
    fallback_of: str = ""  # the message this one stands in for (fallback, escalation)

    @classmethod
    def from_fields(cls, raw: Mapping[str, Any]) -> MessageRecord:
        """A record rebuilt from the log (a stored hash or a listed message)."""

        def text(name: str) -> str:
            return str(raw.get(name) or "")

        return cls(
            id=text("id"),
            event_id=text("event_id"),
            source=text("source"),
            delivery_id=text("delivery_id"),
            customer_id=text("customer_id"),
            milestone=text("milestone"),
            channel=text("channel"),
            to=text("to"),
            template=text("template"),
            locale=text("locale"),
            via_fallback=raw.get("via_fallback") in (True, "1"),
            fallback_of=text("fallback_of"),
        )

    def fields(self) -> dict[str, str]:
        extra = {"fallback_of": self.fallback_of} if self.fallback_of else {}
        return {
            **extra,
            "id": self.id,
            "event_id": self.event_id,
            "source": self.source,
            "delivery_id": self.delivery_id,
            "customer_id": self.customer_id,
            "milestone": self.milestone,
            "channel": self.channel,
            "to": self.to,
            "template": self.template,
            "locale": self.locale,
            "via_fallback": "1" if self.via_fallback else "0",
        }


class HubStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.idem_ttl = settings.retention.idempotency_days * DAY
        self.log_ttl = settings.retention.message_log_days * DAY
        self.timeline_ttl = settings.retention.timeline_days * DAY
        self.queue = settings.worker.queue_name
        self.optout_pepper = keys.optout_pepper(settings.secret_key)
        self._accept = redis.register_script(keys.ACCEPT_EVENT)
        self._apply = redis.register_script(keys.APPLY_EVENT)
        self._claim = redis.register_script(keys.CLAIM_MESSAGE)
        self._forward = redis.register_script(keys.STATUS_FORWARD)
        self._replay = redis.register_script(keys.REPLAY_MESSAGE)
        self._release = redis.register_script(keys.RELEASE_CLAIM)
        self._settle = redis.register_script(keys.SETTLE_MESSAGE)
        self._pace = redis.register_script(keys.PACE)
        self._collapse = redis.register_script(keys.COLLAPSE)
        self._ensure_link = redis.register_script(keys.ENSURE_LINK)

    # -- events ---------------------------------------------------------------------------
    async def accept_events(self, items: list[tuple[str, str, str, bytes]], received_at: str) -> list[str]:
        """Register and enqueue (source, event_id, digest, job payload) in one round trip.

        See keys.ACCEPT_EVENT; the payload is an arq job serialized by the caller.
        """
        now_ms = _now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for source, event_id, digest, payload in items:
                job_id = job_id_of(source, event_id)
                await self._accept(
                    keys=[
                        keys.event(source, event_id),
                        job_key_prefix + job_id,
                        self.queue,
                        result_key_prefix + job_id,
                        keys.ARRIVALS,
                    ],
                    args=[digest, received_at, self.idem_ttl, payload, now_ms, self.idem_ttl * 1000, job_id],
                    client=pipe,
                )
            return [str(r) for r in await pipe.execute()]

    async def mark_done(self, source: str, event_id: str) -> None:
        await self.redis.hset(keys.event(source, event_id), "state", "done")

    async def event_state(self, source: str, event_id: str) -> str | None:
        state = await self.redis.hget(keys.event(source, event_id), "state")
        return str(state) if state else None

    # -- deliveries -----------------------------------------------------------------------
    async def apply_event(
        self,
        *,
        source: str,
        event_id: str,
        delivery_id: str,
        customer_id: str,
        milestone: str,
        occurred_ms: int,
        terminal: bool,
        entry: dict[str, Any],
        fields: dict[str, str],
        contact: dict[str, str],
        received_at: str = "",
    ) -> tuple[bool, dict[str, str], dict[str, Any] | None, bool, int]:
        """Apply an event (see keys.APPLY_EVENT); returns (current, customer hash, delivery,
        whether the customer's phone has opted out of SMS, the event's arrival number)."""
        lift = any(k in contact for k in ("phone", "email", "push_tokens"))
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._apply(
                keys=[
                    keys.delivery(delivery_id),
                    keys.timeline(delivery_id),
                    keys.customer(customer_id),
                    keys.event(source, event_id),
                ],
                args=[
                    milestone,
                    occurred_ms,
                    "1" if terminal else "0",
                    json.dumps(entry, sort_keys=True, separators=(",", ":")),
                    json.dumps(fields),
                    self.timeline_ttl,
                    now_iso(),
                    json.dumps(contact),
                    "1" if lift else "0",
                    received_at,
                    self.optout_pepper,
                ],
                client=pipe,
            )
            if "phone" in contact:
                pipe.set(keys.phone(contact["phone"]), customer_id)
            pipe.sadd(keys.deliveries_of(customer_id), delivery_id)
            pipe.expire(keys.deliveries_of(customer_id), self.timeline_ttl)
            results = await pipe.execute()
        current, customer_flat, delivery_flat, sms_stopped, seq = results[0]
        delivery = _decode_delivery(delivery_id, _pairs(delivery_flat))
        return bool(int(current)), _pairs(customer_flat), delivery, bool(int(sms_stopped)), int(seq)

    async def ensure_link(self, candidates: Sequence[str], delivery_id: str, customer_id: str, ttl: int) -> str | None:
        """Record (or renew) the tracking link of a delivery for a customer; see hub.links.

        ``candidates`` are the link's possible ids in order (``Links.link_ids``): the first that
        is already this delivery's and customer's is renewed, else the first free one is taken;
        one held by another link is never overwritten (keys.ENSURE_LINK). Returns the link id,
        or None when every candidate belongs to another link."""
        found = await self._ensure_link(
            keys=[*(keys.link(c) for c in candidates), keys.links_of(customer_id)],
            args=[delivery_id, customer_id, ttl, now_iso(), *candidates],
        )
        if not found:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)

    async def resolve_link(self, link_id: str) -> dict[str, str] | None:
        """The link's record (delivery_id, customer_id, created_at); None for a missing or
        incomplete one."""
        found: dict[str, str] = await self.redis.hgetall(keys.link(link_id))
        return found if found.get("delivery_id") and found.get("customer_id") else None

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        return _decode_delivery(delivery_id, await self.redis.hgetall(keys.delivery(delivery_id)))

    async def timeline(self, delivery_id: str) -> list[dict[str, Any]]:
        found = await self.redis.zrange(keys.timeline(delivery_id), 0, -1, withscores=True)
        scored = [(score, json.loads(member)) for member, score in found]
        scored.sort(key=lambda pair: (pair[0], int(pair[1].get("seq", 0))))
        # seq: internal, the arrival order (the list's order among events with equal times).
        return [{k: v for k, v in entry.items() if k != "seq"} for _, entry in scored]

    # -- message log ----------------------------------------------------------------------
    async def claim(
        self,
        record: MessageRecord,
        status: str = "sending",
        detail: str = "",
        *,
        due_ms: int | None = None,
        hourly_limit: int = 0,
        clock_ms: int | None = None,
        allowed: str = PENDING,
        job: str = "",
        token: str = "",
    ) -> str:
        """Move a message to ``status`` (see keys.CLAIM_MESSAGE): ``"claimed"`` if done (for
        "sending": the caller may send now), ``"limited:<ms>"`` when the customer's hourly
        limit for the channel is reached, ``"gated:<reason>"`` when the send gate stopped it
        (now "skipped"), else the message's current status. ``token``: the
        handler's own; asking again with it after a lost answer is safe."""
        result = await self._claim(
            keys=[
                keys.message(record.id),
                keys.message_history(record.id),
                keys.messages_by_delivery(record.delivery_id),
                keys.messages_by_customer(record.customer_id),
                *(keys.messages_by_status(s) for s in keys.INDEXED_STATUSES),
                keys.rate_window(record.customer_id, record.channel),
                keys.customer(record.customer_id),
                keys.sms_optout(self.optout_pepper, record.to),
            ],
            args=[
                now_iso(),
                _now_ms(),
                self.log_ttl,
                json.dumps(record.fields()),
                status,
                detail,  # written by the hub (reasons), never provider text: not masked
                allowed,
                hourly_limit,
                HOUR_MS,
                "" if due_ms is None else str(due_ms),
                _now_ms() if clock_ms is None else clock_ms,
                job,
                token,
            ],
        )
        return str(result)

    async def release(self, record: MessageRecord, token: str, detail: str, job: str, due_ms: int) -> bool:
        """Give back a claim made with ``token`` whose provider call never happened (see
        keys.RELEASE_CLAIM; ``job``: the payload a retry of a new message needs, ``due_ms``: when
        it is due, on the policy clock). False when the message is no longer sending under that
        token."""
        found = await self._release(
            keys=[
                keys.message(record.id),
                keys.message_history(record.id),
                *(keys.messages_by_status(s) for s in keys.INDEXED_STATUSES),
                keys.rate_window(record.customer_id, record.channel),
            ],
            args=[token, now_iso(), due_ms, detail, *keys.INDEXED_STATUSES, job],
        )
        return bool(found)

    async def replay(self, message_id: str) -> bool:
        """Mark a dead message for replay; False when it is not dead (already replayed, sent...)."""
        found = await self._replay(
            keys=[
                keys.message(message_id),
                keys.message_history(message_id),
                keys.messages_by_status("dead"),
                keys.messages_by_status("replaying"),
            ],
            args=[now_iso(), _now_ms()],
        )
        return str(found) == "dead"

    async def pace(self, channel: str, sender: str, per_second: float, max_wait: float) -> float:
        """Seconds to wait for the sender's next slot; negative: longer than ``max_wait``, not taken."""
        wait = await self._pace(
            keys=[keys.pace(channel, sender)],
            args=[max(1, round(1000 / per_second)), int(max_wait * 1000)],
        )
        return int(wait) / 1000

    async def collapse_window(self, delivery_id: str, milestone: str, end_ms: int, length_ms: int) -> int:
        """End (ms) of the delivery's open collapsing window for the milestone, opening one if none."""
        found = await self._collapse(keys=[keys.collapse(delivery_id, milestone)], args=[end_ms, max(1, length_ms)])
        return int(found)

    async def newer_events(self, delivery_id: str, occurred_ms: int, seq: int = 0) -> list[str]:
        """Milestones of the delivery's events newer than (``occurred_ms``, arrival ``seq``): those
        that occurred later, and those with the same time that arrived later."""
        found = await self.redis.zrangebyscore(keys.timeline(delivery_id), occurred_ms, "+inf", withscores=True)
        newer = []
        for member, score in found:
            entry = json.loads(member)
            if score > occurred_ms or int(entry.get("seq", 0)) > seq:
                newer.append(entry.get("type", ""))
        return newer

    async def message_fields(self, message_id: str) -> dict[str, str]:
        raw: dict[str, str] = await self.redis.hgetall(keys.message(message_id))
        return raw

    async def overdue(self, status: str, before_ms: int, limit: int) -> list[str]:
        """Ids of messages waiting in ``status`` (deferred, transient, replaying) since before
        ``before_ms`` (due time, or time of the replay request)."""
        found: list[str] = await self.redis.zrangebyscore(
            keys.messages_by_status(status), "-inf", before_ms, start=0, num=limit
        )
        return found

    async def list_by_status(self, status: str, *, since_ms: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Messages in an indexed status (dead, unknown, deferred), oldest first."""
        index = keys.messages_by_status(status)
        await self.redis.zremrangebyscore(index, "-inf", _now_ms() - self.log_ttl * 1000)
        ids = await self.redis.zrangebyscore(index, since_ms, "+inf", start=0, num=limit)
        return await self._load(ids)

    async def record(
        self,
        message_id: str,
        status: str,
        *,
        provider_id: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        extra: dict[str, str] | None = None,
        due_ms: int | None = None,
    ) -> None:
        """Record an outcome. ``due_ms`` (transient: when the retry is due) indexes the message
        for the sweeper; give the retry's job payload in ``extra["job"]``."""
        w = _Outcome.of(message_id, status, provider_id, error, error_code, extra, due_ms, now_iso())
        async with self.redis.pipeline(transaction=True) as pipe:
            # Leaving an indexed status always goes through CLAIM_MESSAGE or REPLAY_MESSAGE,
            # which drop the index entry; here only entering one (dead, unknown) is indexed.
            if w.score:
                pipe.zadd(keys.messages_by_status(status), {message_id: int(w.score)})
            if w.drop:
                pipe.hdel(keys.message(message_id), *w.drop)
            pipe.hset(keys.message(message_id), mapping=w.fields)
            pipe.rpush(keys.message_history(message_id), w.entry)
            if provider_id:
                pipe.set(keys.provider(provider_id), message_id, ex=self.log_ttl)
            await pipe.execute()

    async def settle(
        self,
        message_id: str,
        token: str,
        status: str,
        *,
        at: str,
        provider_id: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        extra: dict[str, str] | None = None,
        due_ms: int | None = None,
        logged: tuple[str, str] | None = None,
    ) -> str:
        """Record the outcome of a provider call made under the claim ``token`` (see
        keys.SETTLE_MESSAGE): ``"done"`` when written now or by an earlier call with the same
        ``at``, else the status found, untouched (the claim is no longer this handler's).

        ``logged`` (status, detail): the history entry instead of the status and its error. A send
        whose answer was lost is a retry to the record (``transient``, so the retry machinery and
        the sweeper take it) and ``in_doubt`` to a reader of its history; an ``accepted`` one
        found at the provider says so."""
        w = _Outcome.of(message_id, status, provider_id, error, error_code, extra, due_ms, at)
        entry = w.entry
        if logged is not None:
            entry = json.dumps({"status": logged[0], "at": at, "detail": mask_numbers(logged[1])})
        result = await self._settle(
            keys=[
                keys.message(message_id),
                keys.message_history(message_id),
                keys.messages_by_status(status),
                keys.provider(provider_id or "-"),
            ],
            args=[
                token,
                status,
                at,
                json.dumps(w.fields),
                entry,
                w.score,
                json.dumps(w.drop),
                message_id,
                self.log_ttl,
            ],
        )
        return str(result)

    async def note(self, message_id: str, detail: str) -> None:
        """Add a line to a message's history without changing its status."""
        status = await self.redis.hget(keys.message(message_id), "status")
        if status:
            entry = {"status": status, "at": now_iso(), "detail": detail}
            await self.redis.rpush(keys.message_history(message_id), json.dumps(entry))

    async def status_forward(self, message_id: str, status: str, rank: int, error_code: str) -> bool:
        """Apply a provider's status callback if it moves the message forward (see STATUS_FORWARD)."""
        changed = await self._forward(
            keys=[keys.message(message_id), keys.message_history(message_id)],
            args=[status, rank, now_iso(), error_code, self.log_ttl],
        )
        return bool(changed)

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.message(message_id))
            pipe.lrange(keys.message_history(message_id), 0, -1)
            raw, history = await pipe.execute()
        if not raw:
            return None
        return _decode_message(raw, history)

    async def list_messages(
        self, *, delivery_id: str | None, customer_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        if delivery_id:
            index = keys.messages_by_delivery(delivery_id)
        elif customer_id:
            index = keys.messages_by_customer(customer_id)
        else:
            raise ValueError("delivery_id or customer_id is required")
        ids = await self.redis.zrange(index, -limit, -1)
        out = await self._load(ids)
        return [m for m in out if not customer_id or m.get("customer_id") == customer_id]

    async def _load(self, ids: list[str]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for message_id in ids:
                pipe.hgetall(keys.message(message_id))
                pipe.lrange(keys.message_history(message_id), 0, -1)
            raw = await pipe.execute()
        return [_decode_message(raw[i], raw[i + 1]) for i in range(0, len(raw), 2) if raw[i]]


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _decode_delivery(delivery_id: str, raw: dict[str, str]) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {"id": delivery_id}
    for name, value in raw.items():
        if name in ("eta", "driver", "reschedule_requested", "instructions", "slots"):
            out[name] = json.loads(value)
        elif name == "terminal":
            out[name] = value == "1"
        elif name not in ("last_ms", "last_seq"):
            out[name] = value
    return out


def _decode_message(raw: dict[str, str], history: list[str]) -> dict[str, Any]:
    # job: the payload a retry, sweep or replay needs; claimed_ms, claim, prior: the sending lease,
    # its holder and the status it replaced. Internal.
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("job", "claimed_ms", "claim", "prior")}
    out.setdefault("to", "")  # removed by an erasure
    out["via_fallback"] = raw.get("via_fallback") == "1"
    if raw.get("due_at"):
        out["due_at"] = datetime.fromtimestamp(int(raw["due_at"]) / 1000, UTC).isoformat(timespec="seconds")
    out["attempts"] = int(raw.get("attempts", "0"))
    out["history"] = [json.loads(h) for h in history]
    return out

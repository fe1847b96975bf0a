"""Redis access for events, deliveries and the message log (key names in ``keys``, scripts in
``lua_log``, the values read and written in ``records``).

Errors: none of its own; Redis errors propagate (the API answers 503, arq retries the job).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from redis.asyncio import Redis

from . import jobs, keys, lua_log
from .config import Settings
from .location import KEEPS, ON_THE_ROAD
from .masking import mask_numbers
from .records import (
    PENDING,
    Claim,
    MessageRecord,
    OutcomeWrite,
    decode_delivery,
    decode_message,
    now_iso,
    now_ms,
    pairs,
    parse_claim,
)

__all__ = ["HubStore"]

DAY = 86_400
HOUR_MS = 3_600_000


class HubStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.idem_ttl = settings.retention.idempotency_days * DAY
        self.log_ttl = settings.retention.message_log_days * DAY
        self.timeline_ttl = settings.retention.timeline_days * DAY
        self.queue = settings.worker.queue_name
        self.optout_pepper = keys.optout_pepper(settings.secret_key)
        self._accept = redis.register_script(lua_log.ACCEPT_EVENT)
        self._apply = redis.register_script(lua_log.APPLY_EVENT)
        self._claim = redis.register_script(lua_log.CLAIM_MESSAGE)
        self._forward = redis.register_script(lua_log.STATUS_FORWARD)
        self._replay = redis.register_script(lua_log.REPLAY_MESSAGE)
        self._release = redis.register_script(lua_log.RELEASE_CLAIM)
        self._settle = redis.register_script(lua_log.SETTLE_MESSAGE)
        self._pace = redis.register_script(lua_log.PACE)
        self._collapse = redis.register_script(lua_log.COLLAPSE)
        self._ensure_link = redis.register_script(lua_log.ENSURE_LINK)

    # -- events ---------------------------------------------------------------------------
    async def accept_events(self, items: list[tuple[str, str, str, dict[str, Any]]], received_at: str) -> list[str]:
        """Register and queue events, (source, event_id, digest, the event as its job carries it),
        in one round trip (lua_log.ACCEPT_EVENT); returns new | conflict | queued | done for each."""
        at_ms = now_ms()
        wake = jobs.wake_channel(self.queue)

        async def accept(client: Any, source: str, event_id: str, digest: str, event: dict[str, Any]) -> Any:
            job_id = jobs.event_job_id(source, event_id)
            payload = jobs.payload(jobs.PROCESS_EVENT, (source, event), enqueued_ms=at_ms)
            return await self._accept(
                keys=[
                    keys.event(source, event_id),
                    jobs.job_key(job_id),
                    self.queue,
                    jobs.result_key(job_id),
                    keys.ARRIVALS,
                ],
                args=[digest, received_at, self.idem_ttl, payload, at_ms, self.idem_ttl * 1000, job_id, wake],
                client=client,
            )

        if len(items) == 1:  # the common case: one EVALSHA, no pipeline (whose scripts cost a SCRIPT EXISTS)
            return [str(await accept(self.redis, *items[0]))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                await accept(pipe, *item)
            return [str(r) for r in await pipe.execute()]

    async def mark_done(self, source: str, event_id: str) -> None:
        await self.redis.hset(keys.event(source, event_id), "state", "done")

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
    ) -> tuple[bool, dict[str, str], dict[str, Any] | None, bool, int, bool]:
        """Apply an event (see lua_log.APPLY_EVENT); returns (current, customer hash, delivery,
        whether the customer's phone has opted out of SMS, the event's arrival number, whether
        the customer's WhatsApp number has opted out of WhatsApp)."""
        lift = any(k in contact for k in ("phone", "email", "push_tokens"))
        phone_key = keys.phone(contact["phone"]) if "phone" in contact else keys.customer(customer_id)
        result = await self._apply(
            keys=[
                keys.delivery(delivery_id),
                keys.timeline(delivery_id),
                keys.customer(customer_id),
                keys.event(source, event_id),
                phone_key,
                keys.deliveries_of(customer_id),
                keys.driver_position(delivery_id),
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
                delivery_id,
                customer_id,
                "," + ",".join((*ON_THE_ROAD, *KEEPS)) + ",",  # the round: its position stays (hub.location)
            ],
        )
        current, customer_flat, delivery_flat, sms_stopped, seq, wa_stopped = result
        delivery = decode_delivery(delivery_id, pairs(delivery_flat))
        return (
            bool(int(current)),
            pairs(customer_flat),
            delivery,
            bool(int(sms_stopped)),
            int(seq),
            bool(int(wa_stopped)),
        )

    async def ensure_link(self, candidates: Sequence[str], delivery_id: str, customer_id: str, ttl: int) -> str | None:
        """Record (or renew) the tracking link of a delivery for a customer; see hub.links.

        ``candidates`` are the link's possible ids in order (``Links.link_ids``): the first that
        is already this delivery's and customer's is renewed, else the first free one is taken;
        one held by another link is never overwritten (lua_log.ENSURE_LINK). Returns the link id,
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
        return decode_delivery(delivery_id, await self.redis.hgetall(keys.delivery(delivery_id)))

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
        allowed: Collection[str] = PENDING,
        job: str = "",
        token: str = "",
    ) -> Claim:
        """Move a message to ``status`` if it is new or in one of the ``allowed`` statuses (see
        lua_log.CLAIM_MESSAGE): ``Claimed`` if done (for "sending": the caller may send now),
        ``Limited`` when the customer's hourly limit for the channel is reached, ``Gated`` when
        the send gate stopped it (now "skipped"), else ``Found`` with the message's current
        status. ``token``: the handler's own; asking again with it after a lost answer is safe."""
        result = await self._claim(
            keys=[
                keys.message(record.id),
                keys.message_history(record.id),
                keys.messages_by_delivery(record.delivery_id),
                keys.messages_by_customer(record.customer_id),
                *(keys.messages_by_status(s) for s in keys.INDEXED_STATUSES),
                keys.rate_window(record.customer_id, record.channel),
                keys.customer(record.customer_id),
                (keys.whatsapp_optout if record.channel == "whatsapp" else keys.sms_optout)(
                    self.optout_pepper, record.to
                ),
            ],
            args=[
                now_iso(),
                now_ms(),
                self.log_ttl,
                json.dumps(record.fields()),
                status,
                detail,  # written by the hub (reasons), never provider text: not masked
                "," + ",".join(sorted(allowed)) + ",",
                hourly_limit,
                HOUR_MS,
                "" if due_ms is None else str(due_ms),
                now_ms() if clock_ms is None else clock_ms,
                job,
                token,
            ],
        )
        return parse_claim(str(result))

    async def release(self, record: MessageRecord, token: str, detail: str, job: str, due_ms: int) -> bool:
        """Give back a claim made with ``token`` whose provider call never happened (see
        lua_log.RELEASE_CLAIM; ``job``: the payload a retry of a new message needs, ``due_ms``: when
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
            args=[now_iso(), now_ms()],
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
        await self.redis.zremrangebyscore(index, "-inf", now_ms() - self.log_ttl * 1000)
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
        w = OutcomeWrite.of(message_id, status, provider_id, error, error_code, extra, due_ms, now_iso())
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
        lua_log.SETTLE_MESSAGE): ``"done"`` when written now or by an earlier call with the same
        ``at``, else the status found, untouched (the claim is no longer this handler's).

        ``logged`` (status, detail): the history entry instead of the status and its error. A send
        whose answer was lost is a retry to the record (``transient``, so the retry machinery and
        the sweeper take it) and ``in_doubt`` to a reader of its history; an ``accepted`` one
        found at the provider says so."""
        w = OutcomeWrite.of(message_id, status, provider_id, error, error_code, extra, due_ms, at)
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
        return decode_message(raw, history)

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
        return [decode_message(raw[i], raw[i + 1]) for i in range(0, len(raw), 2) if raw[i]]

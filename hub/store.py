"""Redis access for events, deliveries and the message log (keys and scripts in ``keys``).

Errors: none of its own; Redis errors propagate (the API answers 503, arq retries the job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import Redis

from . import keys
from .config import Settings
from .masking import mask_numbers

__all__ = ["HubStore", "MessageRecord", "job_id_of", "now_iso"]

DAY = 86_400


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

    def fields(self) -> dict[str, str]:
        return {
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
        self._accept = redis.register_script(keys.ACCEPT_EVENT)
        self._apply = redis.register_script(keys.APPLY_EVENT)
        self._claim = redis.register_script(keys.CLAIM_MESSAGE)
        self._forward = redis.register_script(keys.STATUS_FORWARD)

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
        delivery_id: str,
        customer_id: str,
        milestone: str,
        occurred_ms: int,
        terminal: bool,
        entry: dict[str, Any],
        fields: dict[str, str],
        contact: dict[str, str],
        received_at: str = "",
    ) -> tuple[bool, dict[str, str], dict[str, Any] | None, bool]:
        """Apply an event (see keys.APPLY_EVENT); returns (current, customer hash, delivery,
        whether the customer's phone has opted out of SMS)."""
        lift = any(k in contact for k in ("phone", "email", "push_tokens"))
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._apply(
                keys=[keys.delivery(delivery_id), keys.timeline(delivery_id), keys.customer(customer_id)],
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
                ],
                client=pipe,
            )
            if "phone" in contact:
                pipe.set(keys.phone(contact["phone"]), customer_id)
            pipe.sadd(keys.deliveries_of(customer_id), delivery_id)
            pipe.expire(keys.deliveries_of(customer_id), self.timeline_ttl)
            results = await pipe.execute()
        current, customer_flat, delivery_flat, sms_stopped = results[0]
        delivery = _decode_delivery(delivery_id, _pairs(delivery_flat))
        return bool(int(current)), _pairs(customer_flat), delivery, bool(int(sms_stopped))

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        return _decode_delivery(delivery_id, await self.redis.hgetall(keys.delivery(delivery_id)))

    async def timeline(self, delivery_id: str) -> list[dict[str, Any]]:
        return [json.loads(m) for m in await self.redis.zrange(keys.timeline(delivery_id), 0, -1)]

    # -- message log ----------------------------------------------------------------------
    async def claim(self, record: MessageRecord, status: str = "sending", detail: str = "") -> str:
        """``"claimed"`` if the caller may send now, else the message's current status."""
        result = await self._claim(
            keys=[
                keys.message(record.id),
                keys.message_history(record.id),
                keys.messages_by_delivery(record.delivery_id),
                keys.messages_by_customer(record.customer_id),
            ],
            args=[now_iso(), _now_ms(), self.log_ttl, json.dumps(record.fields()), status, detail],
        )
        return str(result)

    async def record(
        self,
        message_id: str,
        status: str,
        *,
        provider_id: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        at = now_iso()
        fields = {"status": status, "updated_at": at, **(extra or {})}
        if provider_id:
            fields["provider_id"] = provider_id
        if error is not None:
            fields["error"] = mask_numbers(error)
        if error_code is not None:
            fields["error_code"] = error_code
        entry: dict[str, Any] = {"status": status, "at": at}
        if error:
            entry["detail"] = mask_numbers(error)
        async with self.redis.pipeline(transaction=True) as pipe:
            if status == "accepted":
                pipe.hdel(keys.message(message_id), "error", "error_code")
            pipe.hset(keys.message(message_id), mapping=fields)
            pipe.rpush(keys.message_history(message_id), json.dumps(entry))
            if provider_id:
                pipe.set(keys.provider(provider_id), message_id, ex=self.log_ttl)
            await pipe.execute()

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
        async with self.redis.pipeline(transaction=False) as pipe:
            for message_id in ids:
                pipe.hgetall(keys.message(message_id))
                pipe.lrange(keys.message_history(message_id), 0, -1)
            raw = await pipe.execute()
        out = []
        for i in range(0, len(raw), 2):
            if raw[i] and (not customer_id or raw[i].get("customer_id") == customer_id):
                out.append(_decode_message(raw[i], raw[i + 1]))
        return out


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _decode_delivery(delivery_id: str, raw: dict[str, str]) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {"id": delivery_id}
    for name, value in raw.items():
        if name in ("eta", "driver", "reschedule_requested", "instructions"):
            out[name] = json.loads(value)
        elif name == "terminal":
            out[name] = value == "1"
        elif name != "last_ms":
            out[name] = value
    return out


def _decode_message(raw: dict[str, str], history: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(raw)
    out["via_fallback"] = raw.get("via_fallback") == "1"
    out["attempts"] = int(raw.get("attempts", "0"))
    out["history"] = [json.loads(h) for h in history]
    return out

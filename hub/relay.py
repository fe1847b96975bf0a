"""Masked-number relay: drivers and customers reach each other through proxy numbers.

A session binds a delivery's driver and customer. Each gets a proxy number from the pool; the
routing key is (participant's real number, proxy number), so one proxy number serves many live
sessions as long as no participant holds it twice. Allocation, refresh and closing are Lua
scripts (``lua_records.OPEN_RELAY``, ``EXTEND_RELAY``, ``CLOSE_RELAY``); routing keys carry the
session's remaining life as their TTL, so expired sessions stop routing by themselves.

Errors: ``PoolExhausted`` (no proxy number is free for a participant), ``RelayUnavailable``
(no pool configured, or a number is missing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from preferences.validation import phone_region

from . import jobs, keys, lua_records, metrics
from .config import Settings
from .masking import mask_phone
from .stats import Stats
from .webhooks import Webhooks

__all__ = [
    "PoolExhausted",
    "Relay",
    "RelayUnavailable",
    "Route",
    "close_relay_job",
    "schedule_relay_close",
]

log = logging.getLogger(__name__)
Role = Literal["driver", "customer"]


class RelayUnavailable(Exception):
    pass


class PoolExhausted(Exception):
    def __init__(self, role: str) -> None:
        super().__init__(f"no proxy number is free for the {role}")
        self.role = role


@dataclass(frozen=True)
class Route:
    """Where an inbound call or SMS from ``role`` goes."""

    session: dict[str, str]
    role: Role
    other_real: str  # the other participant's real number (never shown to the caller)
    shown_number: str  # the proxy number the other participant knows: their caller id


class Relay:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.cfg = settings.relay
        self.webhooks = Webhooks(redis, settings)
        self._open = redis.register_script(lua_records.OPEN_RELAY)
        self._extend = redis.register_script(lua_records.EXTEND_RELAY)
        self._close = redis.register_script(lua_records.CLOSE_RELAY)
        self._route = redis.register_script(lua_records.ROUTE_RELAY)
        self.log_ttl = settings.retention.message_log_days * 86_400
        self.pool = frozenset(self.cfg.pool)

    @property
    def ttl(self) -> int:
        return int(self.cfg.session_ttl_minutes * 60)

    def pool_for(self, number: str) -> list[str]:
        """The pool with the participant's own country's numbers first."""
        region = phone_region(number)
        return sorted(self.cfg.pool, key=lambda x: phone_region(x) != region)

    async def open(self, delivery_id: str, driver: str, customer: str) -> tuple[dict[str, str], bool]:
        """Open (or return the open) session for a delivery. True when newly opened."""
        if not self.cfg.pool:
            raise RelayUnavailable("no proxy numbers are configured (relay.pool)")
        if driver == customer:
            raise RelayUnavailable("the driver and the customer have the same number")
        sid = f"rs_{uuid.uuid4().hex[:20]}"
        now = time.time()
        fields = {
            "id": sid,
            "delivery_id": delivery_id,
            "driver": driver,
            "customer": customer,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "expires_at": str(now + self.ttl),
        }
        result = await self._open(
            keys=[
                keys.relay_delivery(delivery_id),
                keys.relay_session(sid),
                keys.relay_sticky(driver),
                keys.relay_sticky(customer),
            ],
            args=[
                sid,
                driver,
                customer,
                self.ttl,
                json.dumps(self.pool_for(driver)),
                json.dumps(self.pool_for(customer)),
                json.dumps(fields),
                self.log_ttl,
            ],
        )
        outcome = str(result[0])
        if outcome == "exhausted":
            log.warning("relay pool exhausted for the %s", result[1], extra={"delivery_id": delivery_id})
            raise PoolExhausted(str(result[1]))
        session = await self.get(str(result[1]))
        assert session is not None
        if outcome == "open":
            metrics.RELAY_SESSIONS_OPENED.inc()
            await Stats(self.redis, self.settings).count("relay.session")
            await self.webhooks.emit("relay.session.opened", self.public_view(session), key=f"{session['id']}:opened")
        return session, outcome == "open"

    async def get(self, sid: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(keys.relay_session(sid))
        if not raw:
            return None
        if raw.get("status") == "open" and float(raw.get("expires_at", "0")) < time.time():
            raw["status"] = "expired"
        return dict(raw)

    async def for_delivery(self, delivery_id: str) -> dict[str, str] | None:
        sid = await self.redis.get(keys.relay_delivery(delivery_id))
        return await self.get(sid) if sid else None

    async def close(self, sid: str, reason: str = "closed") -> bool:
        closed = bool(
            await self._close(keys=[keys.relay_session(sid)], args=[datetime.now(UTC).isoformat(), self.log_ttl])
        )
        if closed:
            metrics.RELAY_SESSIONS_CLOSED.inc()
            session = await self.get(sid)
            if session is not None:
                await self.webhooks.emit(
                    "relay.session.closed", {**self.public_view(session), "reason": reason}, key=f"{sid}:closed"
                )
        return closed

    async def close_after_grace(self, delivery_id: str) -> None:
        """The delivery ended: the session stays usable for the grace period, then its routes expire."""
        sid = await self.redis.get(keys.relay_delivery(delivery_id))
        if sid:
            await self._extend(
                keys=[keys.relay_session(sid)],
                args=[max(1, int(self.cfg.close_grace_minutes * 60)), time.time(), "shorten"],
            )

    async def route(self, caller: str, proxy: str) -> Route | None:
        """The live session in which ``caller`` holds ``proxy``, or None (refuse)."""
        flat = await self._route(keys=[keys.relay_route(caller, proxy)], args=[time.time(), self.ttl])
        if not flat:
            return None
        session = dict(zip(flat[::2], flat[1::2], strict=True))
        role: Role = "driver" if session["driver"] == caller and session["driver_proxy"] == proxy else "customer"
        if role == "customer" and not (session["customer"] == caller and session["customer_proxy"] == proxy):
            return None
        other: Role = "customer" if role == "driver" else "driver"
        return Route(session, role, session[other], session[f"{other}_proxy"])

    async def stop_forwarding(self, sid: str, role: Role) -> None:
        await self.redis.hset(keys.relay_session(sid), f"stopped_{role}", "1")

    async def resume_forwarding(self, sid: str, role: Role) -> None:
        await self.redis.hdel(keys.relay_session(sid), f"stopped_{role}")

    async def touch(self, sid: str) -> None:
        """A delivery update counts as activity: the session lives on (never past a grace cut)."""
        await self._extend(keys=[keys.relay_session(sid)], args=[self.ttl, time.time(), "refresh"])

    async def record(
        self, sid: str, direction: str, kind: str, status: str, *, key: str | None = None, **extra: Any
    ) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "direction": direction,
            "kind": kind,
            "status": status,
            **extra,
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(keys.relay_log(sid), json.dumps(entry))
            pipe.expire(keys.relay_log(sid), self.log_ttl)
            await pipe.execute()
        if not self.webhooks.subscribers("relay.interaction"):
            return
        session = await self.get(sid)
        await self.webhooks.emit(
            "relay.interaction",
            {"session_id": sid, "delivery_id": session.get("delivery_id") if session else None, **entry},
            key=key,
        )

    async def interactions(self, sid: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in await self.redis.lrange(keys.relay_log(sid), 0, -1)]

    @staticmethod
    def public_view(session: dict[str, str], *, unmask: bool = False) -> dict[str, Any]:
        """The session without real numbers (unless ``unmask``): proxies are public by nature."""
        return {
            "id": session["id"],
            "delivery_id": session["delivery_id"],
            "status": session.get("status"),
            "created_at": session.get("created_at"),
            "expires_at": datetime.fromtimestamp(float(session.get("expires_at", "0")), UTC).isoformat(
                timespec="seconds"
            ),
            "closed_at": session.get("closed_at"),
            "participants": {
                role: {
                    "number": session.get(role) if unmask else mask_phone(session.get(role)),
                    "proxy_number": session[f"{role}_proxy"],
                    "forwarding_stopped": session.get(f"stopped_{role}") == "1",
                }
                for role in ("driver", "customer")
            },
        }


async def schedule_relay_close(redis: Redis, settings: Settings, sid: str, at: float) -> None:
    """Queue the closing of a session at ``at`` (unix s) on the event queue (a deferred job), so
    ``relay.session.closed`` goes out when the grace period ends."""
    score = int(at * 1000)
    now_ms = int(time.time() * 1000)
    await jobs.enqueue(
        redis,
        settings.worker.queue_name,
        jobs.CLOSE_RELAY_SESSION,
        (sid,),
        job_id=jobs.relay_close_job_id(sid),
        at_ms=score,
        expires_ms=max(1, score - now_ms) + 86_400_000,
        enqueued_ms=now_ms,
    )


async def close_relay_job(ctx: dict[str, Any], sid: str) -> bool:
    """arq job: the grace period after delivery ended; close the session (and say so upstream)."""
    relay: Relay = ctx["runtime"].relay
    return await relay.close(sid, reason="delivery ended")

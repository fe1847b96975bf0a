"""Operators' figures: hourly counters, one increment per fact, never a scan of the message log.

Facts are dotted names (``message.sms.accepted``, ``attempt.first.delivered``,
``failure.nobody_home``, ``reply.confirm``, ``rating.count``, ``relay.call``, ``webhook.dead``,
...), counted in the hash of their UTC hour (``hub:stats:{YYYYMMDDHH}``, hub.keys) under the field
``<dim>|<fact>``: dim ``-`` is every count, ``m:<merchant_id>`` a shop's, ``d:<driver_id>`` a
driver's. A fact costs one Redis call (a script of hub.lua_stats incrementing it under each of its
dimensions), which the worker's client sends in the same round trip as its neighbours'
(hub.redis_batch). The hash expires ``stats.retention_days`` after its hour.

Each fact is counted where the hub's own record of it changed, so a retried job or a repeated
provider report does not count it twice:

- ``message.<channel>.accepted|failed``: hub.outcomes, once the provider call's outcome is
  recorded under the handler's claim; ``delivered|undelivered|failed|read``: hub.status (Twilio's
  reports) and the push receipt, when the forward-only status moved; ``skipped``: the planner's
  skips (hub.pipeline) and the send gate's (hub.dispatch). The shop is the delivery's
  ``merchant_id``, kept on the message's record for the provider's later reports.
- ``attempt.<first|later>.<delivered|failed>`` and ``failure.<reason_code>``: ``event_applied``,
  once per event (guarded by a field on the event's idempotency record), in the hour the event
  occurred, by shop and by driver.
- ``reply.<intent>``: hub.conversation, by the shop of the delivery the reply answers.
- ``relay.session|call|sms`` (hub.relay, hub.relay_hooks) and ``webhook.delivered|retry|dead``
  (hub.webhooks): overall only; they name no shop without a read the hot path would pay for.

Counting never fails the path it sits on: a Redis error loses the count (logged), not the message.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import keys, lua_stats
from .config import Settings
from .schema import occurred_ms_of

__all__ = ["GRANULARITIES", "MAX_HOURS", "MESSAGE_STATUSES", "Stats", "read_stats", "stats_rates"]

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# A bucket's length; days are UTC days.
GRANULARITIES = {"hour": HOUR_MS, "day": DAY_MS}
# The most hours one read may cover (about 416 days): each is one HGETALL.
MAX_HOURS = 10_000
# The message statuses counted (``message.<channel>.<status>``).
MESSAGE_STATUSES = frozenset({"accepted", "delivered", "failed", "undelivered", "skipped", "read"})
# An attempt's outcome by milestone; the milestones that carry a failure reason.
_ATTEMPTS = {"delivered": "delivered", "delivery_failed": "failed"}
_FAILURES = frozenset({"delivery_failed", "exception"})


def hour_of(at_ms: int) -> str:
    """The name of the UTC hour holding ``at_ms`` (``YYYYMMDDHH``)."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y%m%d%H")


def dimensions(merchant_id: str | None, driver_id: str | None) -> list[str]:
    dims = ["-"]
    if merchant_id:
        dims.append(f"m:{merchant_id}")
    if driver_id:
        dims.append(f"d:{driver_id}")
    return dims


class Stats:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.cfg = settings.stats
        self._fact = redis.register_script(lua_stats.COUNT_FACT)
        self._event = redis.register_script(lua_stats.COUNT_EVENT)

    async def count(
        self,
        fact: str,
        n: int = 1,
        *,
        merchant_id: str | None = None,
        driver_id: str | None = None,
        at_ms: int | None = None,
    ) -> None:
        """Count one fact in its hour bucket (now, or ``at_ms``), overall and by shop and driver."""
        await self._count(fact, n, dimensions(merchant_id, driver_id), at_ms, [])

    async def message(self, channel: str, status: str, merchant_id: str | None = None) -> None:
        """``message.<channel>.<status>`` for the statuses counted (others are not figures)."""
        if status in MESSAGE_STATUSES:
            await self.count(f"message.{channel}.{status}", merchant_id=merchant_id)

    async def reply(self, intent: str, delivery_id: str | None) -> None:
        """``reply.<intent>``, by the shop of the delivery answered, read in the same call."""
        await self._count(f"reply.{intent}", 1, ["-"], None, [keys.delivery(delivery_id)] if delivery_id else [])

    async def _count(self, fact: str, n: int, dims: list[str], at_ms: int | None, more: list[str]) -> None:
        at = int(time.time() * 1000) if at_ms is None else at_ms
        expire = self._expire_at(at)
        if expire is None:
            return
        args = [expire, n, fact, *(f"{dim}|{fact}" for dim in dims)]
        await self._run(self._fact, [keys.stats_hour(hour_of(at)), *more], args, fact)

    async def event_applied(self, source: str, event: dict[str, Any], delivery: dict[str, Any]) -> None:
        """The facts an applied event carries (first or later attempt, delivered or failed, why),
        in the hour it occurred; other milestones cost nothing."""
        milestone = event["type"]
        outcome = _ATTEMPTS.get(milestone, "")
        if not outcome and milestone not in _FAILURES:
            return
        data = event.get("data") or {}
        facts = [f"failure.{data.get('reason_code') or 'unspecified'}"] if milestone in _FAILURES else []
        merchant_id = event["delivery"].get("merchant_id") or delivery.get("merchant_id")
        driver_id = (event.get("driver") or {}).get("id") or _stored_driver(delivery)
        at = min(occurred_ms_of(event["occurred_at"]), int(time.time() * 1000))  # never a future hour
        expire = self._expire_at(at)
        if expire is None:
            return
        delivery_id = event["delivery"]["id"]
        event_keys = [
            keys.stats_hour(hour_of(at)),
            keys.event(source, event["event_id"]),
            keys.stats_attempts(delivery_id),
        ]
        ttl = self.settings.retention.timeline_days * 86_400
        dims = dimensions(merchant_id, driver_id)
        args = [expire, outcome, ttl, len(dims), *dims, *facts]
        await self._run(self._event, event_keys, args, milestone)

    def _expire_at(self, at_ms: int) -> int | None:
        """When the hash of ``at_ms``'s hour expires (unix s); None when it has already."""
        end = (at_ms // HOUR_MS + 1) * HOUR_MS // 1000 + self.cfg.retention_days * 86_400
        return end if end > time.time() else None

    async def _run(self, script: Any, script_keys: list[str], args: list[Any], what: str) -> None:
        if not self.cfg.enabled:
            return
        try:
            await script(keys=script_keys, args=args)
        except (RedisError, OSError) as e:  # a figure lost, never the message or event it counts
            log.warning("stats: %s not counted (%s)", what, e)


def _stored_driver(delivery: dict[str, Any]) -> str | None:
    driver = delivery.get("driver")
    if isinstance(driver, str):  # the raw hash's JSON
        try:
            driver = json.loads(driver)
        except ValueError:
            return None
    found = driver.get("id") if isinstance(driver, dict) else None
    return str(found) if found else None


async def read_stats(
    redis: Redis,
    settings: Settings,
    *,
    start_ms: int,
    end_ms: int,
    merchant_id: str | None = None,
    granularity: str = "hour",
) -> dict[str, Any]:
    """The counters between two times:
    ``{"from", "to", "granularity", "merchant_id", "buckets": [{"start", "counts": {fact: n}}],
    "totals": {fact: n}, "by_merchant": {id: {fact: n}}, "by_driver": {id: {fact: n}}}``,
    plus ``"rates"`` (``stats_rates`` of the totals).

    Buckets are UTC hours or UTC days: every bucket from the one holding ``start_ms`` to the last
    that begins before ``end_ms``, empty ones included (``counts`` {}); ``from`` and ``to`` are
    their bounds (ISO 8601, UTC). With ``merchant_id`` the buckets and totals are that shop's,
    ``by_merchant`` holds it alone and ``by_driver`` is empty (drivers are not counted by shop).
    Raises ValueError for an unknown granularity or a range over ``MAX_HOURS`` hours."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    step = GRANULARITIES[granularity]
    first = start_ms // step * step
    starts = list(range(first, max(end_ms, first), step))
    last = starts[-1] + step if starts else first
    hours = list(range(first, last, HOUR_MS))
    if len(hours) > MAX_HOURS:
        raise ValueError(f"the range covers {len(hours)} hours; at most {MAX_HOURS}")
    rows = await _hours(redis, hours)
    wanted = f"m:{merchant_id}" if merchant_id else "-"
    buckets: list[dict[str, int]] = [defaultdict(int) for _ in starts]
    totals: dict[str, int] = defaultdict(int)
    shops: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    drivers: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hour_ms, raw in zip(hours, rows, strict=True):
        bucket = buckets[(hour_ms - first) // step]
        for name, value in raw.items():
            dim, _, fact = name.partition("|")
            n = int(value)
            if dim == wanted:
                bucket[fact] += n
                totals[fact] += n
            if dim.startswith("m:") and (merchant_id is None or dim == wanted):
                shops[dim[2:]][fact] += n
            elif dim.startswith("d:") and merchant_id is None:
                drivers[dim[2:]][fact] += n
    return {
        "from": _iso(first),
        "to": _iso(last),
        "granularity": granularity,
        "merchant_id": merchant_id,
        "buckets": [{"start": _iso(s), "counts": _sorted(b)} for s, b in zip(starts, buckets, strict=True)],
        "totals": _sorted(totals),
        "by_merchant": {k: _sorted(v) for k, v in sorted(shops.items())},
        "by_driver": {k: _sorted(v) for k, v in sorted(drivers.items())},
        "rates": stats_rates(totals),
    }


async def _hours(redis: Redis, hours: list[int]) -> list[dict[str, str]]:
    """Each hour's hash, a thousand per round trip."""
    rows: list[dict[str, str]] = []
    for i in range(0, len(hours), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for hour_ms in hours[i : i + 1000]:
                pipe.hgetall(keys.stats_hour(hour_of(hour_ms)))
            rows.extend(await pipe.execute())
    return rows


def stats_rates(totals: dict[str, int]) -> dict[str, Any]:
    """What the counts say as shares (None where the denominator is 0):
    ``provider_delivery`` per channel (delivered / accepted; None for a channel whose provider
    reported no delivery either way, as SMTP never does), ``first_attempt_success``
    (first attempts delivered / first attempts delivered or failed) and ``reply_shares`` (each
    intent's share of the replies)."""
    channels = sorted({f.split(".")[1] for f in totals if f.startswith("message.") and f.count(".") == 2})
    provider = {c: _delivery_rate(totals, c) for c in channels}
    first = totals.get("attempt.first.delivered", 0)
    replies = {f.removeprefix("reply."): n for f, n in totals.items() if f.startswith("reply.")}
    all_replies = sum(replies.values())
    return {
        "provider_delivery": provider,
        "first_attempt_success": _share(first, first + totals.get("attempt.first.failed", 0)),
        "reply_shares": {intent: _share(n, all_replies) for intent, n in sorted(replies.items())},
    }


def _delivery_rate(totals: dict[str, int], channel: str) -> float | None:
    delivered = totals.get(f"message.{channel}.delivered", 0)
    if not delivered and not totals.get(f"message.{channel}.undelivered", 0):
        return None  # no delivery reports at all: a rate of 0 would say every message was lost
    return _share(delivered, totals.get(f"message.{channel}.accepted", 0))


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts[k] for k in sorted(counts) if counts[k]}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")

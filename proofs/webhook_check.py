"""Checking what reached the webhook subscriber against the hub's own records.

Used by the burst and peak benchmarks and by every chaos run: ``settle_webhooks`` waits until
the hub has delivered every webhook it made, ``webhook_figures`` compares what the subscriber
received with the message log and the delivery records, ``webhooks_ok`` is the verdict and
``webhook_lines`` the report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

__all__ = [
    "CALLBACK_STATUSES",
    "TAKEN",
    "TOLD_STATUSES",
    "settle_webhooks",
    "webhook_figures",
    "webhook_lines",
    "webhooks_ok",
]

# Statuses a message passes through that are told upstream as a `message.status` webhook
# (docs/webhooks.md): the worker's outcomes, and Twilio's reports applied from its callbacks.
TOLD_STATUSES = frozenset({"accepted", "failed", "dead", "expired", "unknown"})
CALLBACK_STATUSES = frozenset({"sent", "delivered", "undelivered"})
TAKEN = frozenset({"accepted"} | CALLBACK_STATUSES)  # the provider took the message


async def _message_log(redis: Any) -> list[tuple[str, str, str, list[str]]]:
    """(message id, channel, status, the statuses of its history) of every logged message."""
    ids = [k async for k in redis.scan_iter("hub:msg:*", count=1000) if k.count(":") == 2]
    async with redis.pipeline(transaction=False) as pipe:
        for key in ids:
            pipe.hmget(key, ["id", "channel", "status"])
            pipe.lrange(f"{key}:history", 0, -1)
        found = await pipe.execute()
    out = []
    for (message_id, channel, status), history in zip(found[::2], found[1::2], strict=True):
        if message_id:
            steps = [str(json.loads(h).get("status", "")) for h in history]
            out.append((message_id, channel or "", status or "", steps))
    return out


async def _delivery_records(redis: Any) -> dict[str, str]:
    """Webhook delivery id -> its status (pending, retrying, delivered, dead), every one the hub made."""
    ids = await redis.zrange("hub:wh:index", 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hget(f"hub:wh:{delivery_id}", "status")
        statuses = await pipe.execute()
    return {i: s or "gone" for i, s in zip(ids, statuses, strict=True)}


async def settle_webhooks(redis_url: str, receiver_url: str, *, quiet: float = 2.0, timeout: float = 90.0) -> bool:
    """Wait until every webhook delivery the hub made is delivered (or dead) and nothing new (a
    delivery, a webhook at the receiver: a late status callback makes both) has come for ``quiet``
    seconds. False when ``timeout`` ran out first."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    redis = Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    since = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    records = await _delivery_records(redis)
                    async with http.get(f"{receiver_url}/hook/count") as resp:
                        received = int((await resp.json())["received"])
                except (RedisError, OSError, aiohttp.ClientError):
                    records, received = {"?": "unreachable"}, -1
                now = (len(records), received)
                open_ = any(s not in ("delivered", "dead") for s in records.values())
                if now != last or open_:
                    last, since = now, time.monotonic()
                elif time.monotonic() - since >= quiet:
                    return True
                await asyncio.sleep(0.25)
        return False
    finally:
        await redis.aclose()


async def webhook_figures(redis_url: str, receiver_url: str, sms_taken: int) -> dict[str, Any]:
    """What the subscriber received, checked against the hub's own records; ``sms_taken``: SMS the
    Twilio fake took (each gets two status callbacks, ``sent`` and ``delivered``).

    Webhooks are at least once (docs/webhooks.md): a receiver de-duplicates on ``id``. So the
    check is that no id is missing, not that none came twice: every delivery the hub recorded
    reached the receiver (``missing_ids``), and every status a logged message passed through
    that is told upstream (accepted, failed, dead, expired, unknown, and the sent / delivered /
    undelivered of an applied Twilio callback) reached it as a ``message.status`` for that
    message (``status_missing``). ``repeated``: webhooks received again under an id already
    received (allowed); ``refused``: bad signatures."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        log = await _message_log(redis)
        records = await _delivery_records(redis)
    finally:
        await redis.aclose()
    async with aiohttp.ClientSession() as http, http.get(f"{receiver_url}/hook/log") as resp:
        taken = await resp.json()
    received: list[dict[str, Any]] = taken["received"]
    unique = {h["id"]: h for h in received}
    told = {(h["message_id"], h["status"]) for h in unique.values() if h["type"] == "message.status"}
    expected: set[tuple[str, str]] = set()
    applied: Counter[str] = Counter()
    overtaken = 0
    for message_id, _, status, steps in log:
        # The fake posts `delivered` only once `sent` was answered: a `delivered` without `sent`
        # in the history is a `sent` the hub applied too late (a status only moves forward).
        overtaken += "sent" not in steps and bool({"delivered", "undelivered"} & set(steps))
        if status in TAKEN:
            expected.add((message_id, "accepted"))
        elif status in TOLD_STATUSES:
            expected.add((message_id, status))
        for step in steps:
            if step in TOLD_STATUSES or step in CALLBACK_STATUSES:
                expected.add((message_id, step))
            if step in CALLBACK_STATUSES:
                applied[step] += 1
    missing = sorted(expected - told)
    return {
        "received": len(received),
        "unique": len(unique),
        "repeated": len(received) - len(unique),
        "by_type": dict(Counter(h["type"] for h in unique.values())),
        "message_status": dict(Counter(h["status"] for h in unique.values() if h["type"] == "message.status")),
        "refused": int(taken["refused"]),
        "recorded": len(records),
        "not_delivered": dict(Counter(s for s in records.values() if s != "delivered")),
        "missing_ids": sum(1 for i in records if i not in unique),
        "status_expected": len(expected),
        "status_missing": len(missing),
        "status_missing_sample": [f"{m} {s}" for m, s in missing[:10]],
        "callbacks_applied": dict(applied),
        "callbacks_overtaken": overtaken,
        "callbacks_expected": 2 * sms_taken,
        "callbacks_not_applied": 2 * sms_taken - sum(applied.values()) - overtaken,
    }


def webhooks_ok(figures: dict[str, Any]) -> bool:
    """Every webhook the hub made, and every message status it should tell, reached the subscriber."""
    return not (figures["missing_ids"] or figures["status_missing"] or figures["refused"])


def webhook_lines(figures: dict[str, Any], indent: str = "", width: int = 34, colon: str = "") -> list[str]:
    """The webhook and callback figures as report lines (``colon`` after each label, if given)."""
    f = figures
    applied = f["callbacks_applied"]
    rows = [
        ("webhooks received", f"{f['received']} ({f['unique']} distinct ids; {f['repeated']} again, allowed)"),
        ("  by type", str(f["by_type"])),
        ("  message.status by status", str(f["message_status"])),
        (
            "  made by hub / not received",
            f"{f['recorded']} / {f['missing_ids']}"
            + (f" (not delivered: {f['not_delivered']})" if f["not_delivered"] else ""),
        ),
        (
            "  statuses to tell / not told",
            f"{f['status_expected']} / {f['status_missing']}"
            + (f", e.g. {', '.join(f['status_missing_sample'][:3])}" if f["status_missing"] else ""),
        ),
        ("  bad signatures", str(f["refused"])),
        (
            "status callbacks applied",
            f"{sum(applied.values())} of {f['callbacks_expected']} (2 per SMS Twilio took): "
            f"sent {applied.get('sent', 0)}, delivered {applied.get('delivered', 0)}",
        ),
        ("  sent overtaken by delivered", f"{f['callbacks_overtaken']} (not applied: a status only moves forward)"),
        ("  not applied otherwise", str(f["callbacks_not_applied"])),
    ]
    return [f"{indent}{label + colon:<{width}}{value}" for label, value in rows]

"""Erasure leaves no personal data anywhere: every key name and every value in Redis is scanned
for the customer's phone (with and without ``+``), e-mail, name and what they wrote."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.erasure import migrate_optout_keys
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

PHONE = "+4915112345678"
SLOTS = [
    {"id": "s1", "start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T12:00:00+01:00"},
    {"id": "s2", "start": "2099-11-25T13:00:00+01:00", "end": "2099-11-25T17:00:00+01:00"},
]
NEEDLES = [PHONE, PHONE[1:], "ana@example.com", "Ana Weber", "gate code 4711", "rude-but-fair"]


async def everything_in(redis: aioredis.Redis) -> list[tuple[str, str]]:
    """(key name, value as text) for every key in Redis, whatever its type."""
    found: list[tuple[str, str]] = []
    async for raw_name in redis.scan_iter(count=1000):
        name = raw_name if isinstance(raw_name, str) else raw_name.decode("utf-8", "replace")
        kind = await redis.type(raw_name)
        kind = kind if isinstance(kind, str) else kind.decode()
        value: Any
        if kind == "string":
            value = await redis.get(raw_name)
        elif kind == "hash":
            value = await redis.hgetall(raw_name)
        elif kind == "list":
            value = await redis.lrange(raw_name, 0, -1)
        elif kind == "set":
            value = await redis.smembers(raw_name)
        elif kind == "zset":
            value = await redis.zrange(raw_name, 0, -1)
        else:
            value = kind
        found.append((name, repr(value)))
    return found


def traces(found: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {needle}" for name, text in found for needle in NEEDLES if needle in name or needle in text]


async def test_erasure_leaves_no_personal_data_in_any_key_name_or_value(hub: Hub) -> None:
    # A prompt with slots, an instruction with an access code, a rating with a comment, a
    # message held for quiet hours (its job carries the event), webhooks of all of them.
    await hub.post_event(make_event("out_for_delivery", data={"reschedule_slots": SLOTS}))
    await hub.run_worker()
    await hub.text_hub(PHONE, "NEIGHBOUR gate code 4711 ALWAYS")
    await hub.post_event(
        make_event("delivered", occurred_at="2026-11-24T08:20:00+01:00", data={"pod": {"recipient": "Ana Weber"}})
    )
    await hub.run_worker()
    await hub.text_hub(PHONE, "2 rude-but-fair")
    hub.now = datetime.fromisoformat("2026-11-24T23:30:00+01:00").timestamp()
    await hub.post_event(make_event("shipped", delivery__id="D-2", occurred_at="2026-11-24T23:29:00+01:00"))
    await hub.run_worker()
    await hub.text_hub(PHONE, "STOP")

    redis = aioredis.Redis.from_url(hub.settings.redis_url or "")
    try:
        before = traces(await everything_in(redis))
        assert any(PHONE in t for t in before) and any("4711" in t for t in before)  # the scan sees them
        assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
        left = traces(await everything_in(redis))
        assert left == []
        # Held messages whose time comes send nothing, and the suppression list still holds.
        hub.now = datetime.fromisoformat("2026-11-25T09:00:00+01:00").timestamp()
        await hub.fast_forward(0)
        await hub.run_worker()
        assert [m for m in hub.messages() if m["meta"].get("delivery_id") == "D-2"] == []
        # The same phone given again (a new order): its STOP still holds.
        await hub.post_event(
            make_event(
                "out_for_delivery",
                delivery__id="D-3",
                occurred_at="2026-11-25T08:59:00+01:00",
                customer={"id": "C-77", "phone": PHONE},
            )
        )
        await hub.run_worker()
        assert [m for m in hub.messages(to=PHONE) if m["meta"].get("delivery_id") == "D-3"] == []
    finally:
        await redis.aclose()


async def test_opt_outs_stored_under_the_plain_number_move_to_keyed_names_and_still_hold(hub: Hub) -> None:
    redis = aioredis.Redis.from_url(hub.settings.redis_url or "", decode_responses=True)
    try:
        await redis.hset(f"hub:sms_optout:{PHONE}", mapping={"at": "2026-01-01T00:00:00+00:00", "keyword": "STOP"})
        await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
        await hub.run_worker()  # the worker moves it at start-up
        assert hub.messages(channel="sms") == []
        assert not await redis.exists(f"hub:sms_optout:{PHONE}")
        assert await migrate_optout_keys(redis, hub.settings.secret_key) == 0  # idempotent
        names = [name async for name in redis.scan_iter(match="hub:sms_optout:*")]
        assert len(names) == 1 and PHONE[1:] not in names[0]
    finally:
        await redis.aclose()


@pytest.mark.settings(**{"relay.pool": ["+4915700000100", "+4915700000101"]})
async def test_erasure_leaves_no_trace_in_the_relay(hub: Hub) -> None:
    """A relay session with texts and calls through it: after erasure no relay key names or holds
    the customer's number (the driver's stays, the session is closed)."""
    await hub.post_event(make_event("shipped"))
    await hub.run_worker()
    session = await (await hub.request("POST", "/v1/deliveries/D-1001/relay")).json()
    proxy = session["participants"]["customer"]["proxy_number"]
    await hub.http.post(hub.sandbox_url + "/sms/inbound", json={"from": PHONE, "to": proxy, "body": "gate code 4711"})
    await hub.http.post(hub.sandbox_url + "/voice/inbound", json={"from": PHONE, "to": proxy})
    redis = aioredis.Redis.from_url(hub.settings.redis_url or "")
    try:
        before = traces(await everything_in(redis))
        assert any(t.startswith("hub:relay") and PHONE in t for t in before), before  # the scan sees them
        assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
        assert traces(await everything_in(redis)) == []
    finally:
        await redis.aclose()

"""Webhooks a worker makes are POSTed by that worker at once, their queued jobs a backstop: the
job waits behind the POST and runs only when the POST's outcome was not recorded; a failed
first attempt hands over to the queue at its first retry (hub.webhooks.Webhooks, ``direct``)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from hub import keys, lua_records
from hub.redis_batch import BatchingRedis
from hub.webhooks import Webhooks
from hub.worker import create_webhook_worker, create_worker, drain
from tests.conftest import Hub
from tests.events import make_event
from tests.test_redis_faults import CuttingProxy


async def _status_hooks(hub: Hub) -> dict[str, dict[str, str]]:
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        ids = await client.zrange(keys.WEBHOOK_INDEX, 0, -1)
        rows = {i: await client.hgetall(keys.webhook(i)) for i in ids}
        return {i: r for i, r in rows.items() if r.get("type") == "message.status"}
    finally:
        await client.aclose()


async def _queued(hub: Hub) -> dict[str, float]:
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        return dict(await client.zrange(hub.settings.webhooks.queue_name, 0, -1, withscores=True))
    finally:
        await client.aclose()


async def _run_event_worker(hub: Hub) -> None:
    await drain(create_worker(hub.settings, handle_signals=False, clock=hub.clock))


async def test_the_worker_posts_its_status_webhooks_itself_and_drops_their_jobs(hub: Hub) -> None:
    assert (await hub.post_event(make_event("out_for_delivery"))).status == 202
    await _run_event_worker(hub)  # the event worker only: no webhook worker runs
    accepted = hub.receiver.of_type("message.status")
    assert accepted and {w["data"]["status"] for w in accepted} == {"accepted"}
    rows = await _status_hooks(hub)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert {r["attempts"] for r in rows.values()} == {"1"}
    assert await _queued(hub) == {}  # delivered: no job left behind
    assert hub.receiver.attempts == len(accepted)


async def test_a_failed_first_post_hands_over_to_the_queue_at_its_first_retry(hub: Hub) -> None:
    hub.receiver.always_fail = True
    assert (await hub.post_event(make_event("out_for_delivery"))).status == 202
    before_ms = time.time() * 1000
    await _run_event_worker(hub)
    rows = await _status_hooks(hub)
    assert rows and {r["status"] for r in rows.values()} == {"retrying"}
    assert {r["attempts"] for r in rows.values()} == {"1"}
    assert {r["last_error"] for r in rows.values()} == {"HTTP 500"}
    queued = await _queued(hub)
    assert set(queued) == set(rows)  # each has its job, due at the retry (not at the POST's lease)
    lease_ms = (hub.settings.webhooks.timeout + 5) * 1000
    assert all(score < before_ms + lease_ms for score in queued.values())
    hub.receiver.always_fail = False
    # drain runs the jobs due within its horizon (2 s): the test settings' backoff is 0.2 s at most.
    await drain(create_webhook_worker(hub.settings, handle_signals=False))
    rows = await _status_hooks(hub)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert {r["attempts"] for r in rows.values()} == {"2"}
    assert len(hub.receiver.of_type("message.status")) == len(rows)


async def test_a_post_in_flight_has_its_job_queued_behind_it(hub: Hub) -> None:
    """The backstop: while a worker POSTs, the delivery's job is queued, due when the POST must
    have ended; a worker that died there would leave it to that job."""
    hub.receiver.gate = answer = asyncio.Event()
    assert (await hub.post_event(make_event("arriving_soon"))).status == 202
    started_ms = time.time() * 1000
    run = asyncio.ensure_future(_run_event_worker(hub))
    await asyncio.wait_for(hub.receiver.arrived.wait(), 30)
    queued = await _queued(hub)
    rows = await _status_hooks(hub)
    assert set(queued) == set(rows) and {r["status"] for r in rows.values()} == {"pending"}
    lease_ms = (hub.settings.webhooks.timeout + 5) * 1000
    assert all(score >= started_ms + lease_ms for score in queued.values())
    answer.set()
    await run
    assert await _queued(hub) == {}
    assert {r["status"] for r in (await _status_hooks(hub)).values()} == {"delivered"}


@pytest.mark.settings(**{"webhooks.direct_concurrency": 0})
async def test_with_direct_delivery_off_every_webhook_goes_through_the_queue(hub: Hub) -> None:
    assert (await hub.post_event(make_event("out_for_delivery"))).status == 202
    await _run_event_worker(hub)
    assert hub.receiver.received == []
    assert set(await _queued(hub)) == set(await _status_hooks(hub))
    await drain(create_webhook_worker(hub.settings, handle_signals=False))
    assert {r["status"] for r in (await _status_hooks(hub)).values()} == {"delivered"}
    assert await _queued(hub) == {}


@pytest.mark.settings(**{"webhooks.direct_concurrency": 1})
async def test_a_delivery_redis_failed_to_make_gives_its_slot_back(hub: Hub) -> None:
    """The connection breaks as the record is made: the emit fails (its caller retries), and the
    direct slot it took goes back; else each outage would leave fewer until none were left and
    every webhook waited for the queue. Here there is one slot: the next webhook still uses it."""
    client = aioredis.Redis.from_url(str(hub.settings.redis_url))
    await client.script_load(lua_records.CREATE_WEBHOOK)
    await client.aclose()
    target = urlsplit(str(hub.settings.redis_url))
    trigger = hashlib.sha1(lua_records.CREATE_WEBHOOK.encode()).hexdigest().encode()
    proxy = CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379, 0.2, trigger)
    await proxy.start()
    redis = BatchingRedis.from_url(f"redis://127.0.0.1:{proxy.port}/0", decode_responses=True)
    webhooks = Webhooks(redis, hub.settings, direct=True)
    try:
        proxy.armed = True
        with pytest.raises((RedisConnectionError, OSError)):
            await webhooks.emit("message.status", {"message_id": "m-cut", "status": "accepted"}, key="m-cut")
        while asyncio.get_running_loop().time() < proxy.down_until:  # the outage ends
            await asyncio.sleep(0.01)
        await webhooks.emit("message.status", {"message_id": "m-next", "status": "accepted"}, key="m-next")
        await webhooks.settle()  # a direct POST, no webhook worker
        assert [w["data"]["message_id"] for w in hub.receiver.of_type("message.status")] == ["m-next"]
    finally:
        await webhooks.close()
        await redis.aclose()
        await proxy.close()

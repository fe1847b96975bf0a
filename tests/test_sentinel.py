"""Redis through Sentinel: a real primary, replicas and a sentinel (the redis-server binary the
other tests use, ``proofs.chaos_failover.RedisGroup``).

- The settings: one of ``redis_url`` and ``redis_sentinel.sentinels``, named when wrong.
- An event is answered 202 only once a replica holds it: with no replica, 503 with Retry-After;
  posted again once one is back, it is a duplicate, answered 202 (real API, real Redis). The
  same wait (``replicated``) guards a worker's claim before the provider call.
- The chaos run (marked ``chaos``): the primary killed while events are posted to real `hub api`
  and `hub worker` processes; nothing accepted is lost, nothing sent twice, the recovery timed
  (``hub chaos redis-failover`` prints the same figures).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from hub.api import create_app
from hub.config import ROOT, ConfigError, Settings, load_settings
from hub.redis_conn import NotReplicated, arq_redis_settings, connect, replicated, require_redis
from proofs.chaos_failover import SERVICE, RedisGroup, run_failover
from tests.conftest import API_KEY
from tests.events import make_event


def sentinel_settings(sentinel_port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_sentinel.sentinels": [f"127.0.0.1:{sentinel_port}"],
        "redis_sentinel.service": SERVICE,
        "api_key": API_KEY,
        "secret_key": "test-secret",
        **overrides,
    }
    return load_settings(ROOT / "config.yaml", environ={}, **values)


def test_redis_url_and_sentinels_together_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"redis_url or redis_sentinel\.sentinels, not both"):
        load_settings(
            ROOT / "config.yaml", environ={"HUB_REDIS_URL": "redis://x", "HUB_REDIS_SENTINEL__SENTINELS": "[a:26379]"}
        )


def test_a_sentinel_address_without_a_port_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"redis_sentinel\.sentinels"):
        load_settings(ROOT / "config.yaml", environ={"HUB_REDIS_SENTINEL__SENTINELS": "[10.0.0.5]"})


def test_neither_redis_url_nor_sentinels_is_refused_where_redis_is_needed() -> None:
    settings = load_settings(ROOT / "config.yaml", environ={})
    with pytest.raises(ValueError, match=r"redis_url or redis_sentinel\.sentinels is required"):
        require_redis(settings)


def test_arq_finds_the_primary_through_the_same_sentinels() -> None:
    settings = load_settings(
        ROOT / "config.yaml", environ={"HUB_REDIS_SENTINEL__SENTINELS": "['10.0.0.5:26379', '10.0.0.6:26380']"}
    )
    arq = arq_redis_settings(settings)
    assert arq.sentinel and arq.sentinel_master == "mymaster"
    assert arq.host == [("10.0.0.5", 26379), ("10.0.0.6", 26380)]


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[RedisGroup]:
    redis_group = RedisGroup(tmp_path)
    try:
        await redis_group.start()
        yield redis_group
    finally:
        redis_group.stop()


async def replicas_of(port: int) -> int:
    async with aioredis.Redis(port=port, decode_responses=True) as r:
        return int((await r.info("replication"))["connected_slaves"])


async def test_an_event_no_replica_holds_is_answered_503_and_accepted_when_posted_again(group: RedisGroup) -> None:
    primary, *replicas = group.ports
    settings = sentinel_settings(group.sentinel_port, **{"redis_sentinel.ack_timeout_ms": 200})
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def acking() -> bool:
        # A replica "online" in the primary's INFO can still miss the 200 ms this test allows
        # its first WAIT on a busy machine: wait until one acknowledges writes.
        redis = connect(settings)
        try:
            await replicated(redis, settings)
            return True
        except NotReplicated:
            return False
        finally:
            await redis.aclose()

    async with TestClient(TestServer(create_app(settings))) as client:
        await group.until(acking, 20, "the replicas acknowledging writes")
        first = await client.post("/v1/events", json=make_event(event_id="ev-replicated"), headers=headers)
        assert first.status == 202, await first.text()

        for port in replicas:
            group.kill(port)

        async def none_left() -> bool:
            return await replicas_of(primary) == 0

        await group.until(none_left, 10, "the primary noticing its replicas gone")
        event = make_event(event_id="ev-unreplicated")
        refused = await client.post("/v1/events", json=event, headers=headers)
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"]
        assert (await refused.json())["error"]["code"] == "store_unavailable"
        redis = connect(settings)
        try:  # what a worker's claim meets too (hub.dispatch): it is given back, not sent
            with pytest.raises(NotReplicated, match="0 of 1 replicas"):
                await replicated(redis, settings)
            await replicated(redis, settings.replace(**{"redis_sentinel.min_replicas_acked": 0}))
        finally:
            await redis.aclose()

        group.start_replica(replicas[0], primary)

        async def one_back() -> bool:
            return await group.synced(primary, 1)

        await group.until(one_back, 20, "a replica back in sync")

        await group.until(acking, 20, "the replica acknowledging writes")
        again = await client.post("/v1/events", json=event, headers=headers)
        assert again.status == 202, await again.text()
        assert (await again.json())["status"] == "duplicate"  # the refused post had written it


async def test_the_client_finds_the_primary_the_sentinel_names(group: RedisGroup) -> None:
    settings = sentinel_settings(group.sentinel_port)
    redis = connect(settings)
    try:
        await redis.set("hub:test", "1")
        async with aioredis.Redis(port=group.ports[0], decode_responses=True) as primary:
            assert await primary.get("hub:test") == "1"
    finally:
        await redis.aclose()


@pytest.mark.chaos
@pytest.mark.slow
async def test_primary_killed_mid_run_loses_no_accepted_event_and_sends_nothing_twice() -> None:
    r = await run_failover(events=200)
    print(
        f"failover: new primary named after {r.promoted_s:.1f} s, events accepted again after "
        f"{r.accepting_s:.1f} s, messages sent again after {r.sending_s:.1f} s"
    )
    assert r.accepted_events == r.events, r
    assert r.lost_events == 0, f"{r.lost_events} accepted events lost"
    assert r.missing == 0, f"{r.missing} messages of accepted events never sent"
    assert r.doubled == 0, f"{r.doubled} messages sent twice"
    assert r.sent_once == r.planned
    assert r.refused_posts, "no post met the failover: the kill came too late"
    assert r.accepting_s > 0 and r.sending_s > 0
    assert r.ok()

"""BatchingRedis (hub.redis_batch): commands issued together share one round trip, each caller
gets its own reply or its own error, and a script Redis has forgotten loads itself again."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from hub.redis_batch import BatchingRedis
from hub.redis_server import free_port


async def _reads(probe: aioredis.Redis) -> int:
    """Requests Redis has read from its clients so far (INFO stats; the INFO itself is one)."""
    stats = await probe.info("stats")
    return int(stats["total_reads_processed"])


async def test_commands_issued_together_share_one_round_trip(redis_url: str) -> None:
    batching = BatchingRedis.from_url(redis_url, decode_responses=True)
    plain = aioredis.Redis.from_url(redis_url, decode_responses=True)
    probe = aioredis.Redis.from_url(redis_url)
    try:
        await asyncio.gather(batching.ping(), plain.ping(), probe.ping())
        before = await _reads(probe)
        await asyncio.gather(*(batching.set(f"k{i}", i) for i in range(50)))
        batched = await _reads(probe) - before - 1  # less the INFO itself
        before = await _reads(probe)
        await asyncio.gather(*(plain.set(f"p{i}", i) for i in range(50)))
        unbatched = await _reads(probe) - before - 1
        assert batched <= 2 < 40 <= unbatched  # one pipeline (one read, or two if split) against 50
        values = await asyncio.gather(*(batching.get(f"k{i}") for i in range(50)))
        assert values == [str(i) for i in range(50)]  # each caller its own reply, in order
    finally:
        await batching.aclose()
        await plain.aclose()
        await probe.aclose()


async def test_an_error_reply_goes_to_its_own_command_only(redis_url: str) -> None:
    client = BatchingRedis.from_url(redis_url, decode_responses=True)
    try:
        await client.set("text", "not a number")
        results = await asyncio.gather(
            client.incr("counter"), client.incr("text"), client.hset("h", "f", "v"), return_exceptions=True
        )
        assert results[0] == 1 and results[2] == 1
        assert isinstance(results[1], ResponseError)
        assert await client.hgetall("h") == {"f": "v"}
    finally:
        await client.aclose()


async def test_a_script_redis_forgot_is_loaded_again_inside_a_batch(redis_url: str) -> None:
    client = BatchingRedis.from_url(redis_url, decode_responses=True)
    try:
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        assert await script(keys=["n"]) == 1
        await client.script_flush()
        # NOSCRIPT for the batched calls: each loads the script and runs again, once.
        results = await asyncio.gather(*(script(keys=["n"]) for _ in range(5)), client.get("n"))
        assert sorted(results[:5]) == [2, 3, 4, 5, 6]
        assert await client.get("n") == "6"
    finally:
        await client.aclose()


async def test_a_broken_connection_fails_every_command_of_its_batch(redis_url: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = BatchingRedis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        results = await asyncio.gather(client.get("a"), client.get("b"), return_exceptions=True)
        assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results)
    finally:
        await client.aclose()


@pytest.mark.parametrize("command", ["WAIT", "BLPOP"])
def test_commands_bound_to_their_connection_are_never_batched(command: str) -> None:
    from hub.redis_batch import _ALONE

    assert command in _ALONE


def _open_connections(client: aioredis.Redis) -> int:
    pool = client.connection_pool
    conns = [*pool._available_connections, *pool._in_use_connections]  # type: ignore[attr-defined]
    return sum(1 for c in conns if c._writer is not None)  # type: ignore[attr-defined]


async def test_closing_lets_batches_in_flight_finish_and_leaves_no_connection_open(redis_url: str) -> None:
    # Commands issued just before the client closes (a worker stopped mid-job): their batch is
    # sent after close() unless close waits for it, and its connection then stays open, to be
    # found unclosed by the garbage collector in some later test.
    client = BatchingRedis.from_url(redis_url, decode_responses=True)
    calls = [asyncio.ensure_future(client.set(f"late{i}", i)) for i in range(5)]
    await asyncio.sleep(0)  # the callers are queued; the batch is not sent yet
    await client.aclose()
    assert await asyncio.gather(*calls, return_exceptions=True) == [True] * 5
    assert _open_connections(client) == 0

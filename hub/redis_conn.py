"""Connections to Redis, the one place that makes them: from ``redis_url``, or through Redis
Sentinel (``redis_sentinel``) for failover.

With Sentinel, a client never holds the primary's address: redis-py's ``SentinelConnectionPool``
asks the sentinels for it on every new connection, and a connection the dead primary leaves
behind (or a demoted one, answering READONLY) is dropped, so the next command reaches the
replica Sentinel promoted. Until then commands fail with a ``ConnectionError``, as with a Redis
restart: the API answers 503 with Retry-After, the worker polls again (hub.worker).

Redis replicates asynchronously: a write the primary took may be missing on the replica that
replaces it. Two writes must survive a failover, and ``replicated`` waits for them (Redis WAIT):
an accepted event, before the API answers 202 (hub.intake), and a message's claim, before a
worker calls the provider (else the new primary would let the message be sent again).

Exceptions: ``NotReplicated`` (a ``RedisError``: the API's error handler turns it into 503).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from arq.connections import RedisSettings
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError
from redis.sentinel import Sentinel as SyncSentinel

from . import keys, lua_log, lua_records
from .config import Settings
from .redis_batch import BatchingRedis

__all__ = [
    "NotReplicated",
    "arq_redis_settings",
    "connect",
    "load_scripts",
    "redis_configured",
    "replicated",
    "require_redis",
    "wait_until_reachable",
]

# Seconds to connect to a sentinel or to the primary: a dead host is given up on quickly, and the
# sentinels are asked again.
CONNECT_TIMEOUT = 1.0
# Seconds a sentinel has to answer: it keeps everything in memory, so slower means it is gone.
SENTINEL_TIMEOUT = 1.0


class NotReplicated(RedisError):
    """Fewer replicas than ``redis_sentinel.min_replicas_acked`` confirmed a write in time."""


def redis_configured(settings: Settings) -> bool:
    return bool(settings.redis_url or settings.redis_sentinel.sentinels)


def require_redis(settings: Settings) -> None:
    """Refuse to start a part of the hub that needs Redis without one configured."""
    if not redis_configured(settings):
        raise ValueError(
            "redis_url or redis_sentinel.sentinels is required"
            " (set HUB_REDIS_URL, or HUB_REDIS_SENTINEL__SENTINELS='[host:port, ...]')"
        )


def _addresses(settings: Settings) -> list[tuple[str, int]]:
    out = []
    for address in settings.redis_sentinel.sentinels:
        host, _, port = address.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


class _SentinelMaster(BatchingRedis):
    """The primary's client; closing it also closes the connections to the sentinels."""

    sentinel_clients: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for client in self.sentinel_clients:
            await client.aclose()


def _sentinel_options() -> dict[str, Any]:
    return {
        "sentinel_kwargs": {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT},
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }


def connect(settings: Settings, *, decode_responses: bool = True, **options: Any) -> Redis:
    """A client of the primary: ``redis_url``'s server, or the one the sentinels name now; it
    batches the commands issued together into one round trip (hub.redis_batch)."""
    require_redis(settings)
    cfg = settings.redis_sentinel
    if not cfg.sentinels:
        plain: Redis = BatchingRedis.from_url(str(settings.redis_url), decode_responses=decode_responses, **options)
        return plain
    # redis-py's Sentinel has no type annotations (hence the ignores and the check below).
    sentinel = Sentinel(_addresses(settings), **_sentinel_options())  # type: ignore[no-untyped-call]
    client = sentinel.master_for(
        cfg.service,
        redis_class=_SentinelMaster,
        password=cfg.password,
        db=cfg.db,
        decode_responses=decode_responses,
        **options,
    )
    if not isinstance(client, _SentinelMaster):
        raise TypeError(f"master_for returned {type(client).__name__}")
    client.sentinel_clients = tuple(sentinel.sentinels)
    return client


async def load_scripts(redis: Redis) -> None:
    """Load the message log's and records' Lua scripts into Redis now (a process does this when
    it starts): the first calls would otherwise each meet NOSCRIPT, load and run again. Redis
    unreachable is no error here: the scripts load themselves on first use."""
    with contextlib.suppress(RedisError, OSError):
        for module in (lua_log, lua_records):
            for name in module.__all__:
                await redis.script_load(getattr(module, name))


def arq_redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings for the same Redis (its queue, its worker's pool)."""
    require_redis(settings)
    cfg = settings.redis_sentinel
    if not cfg.sentinels:
        return RedisSettings.from_dsn(str(settings.redis_url))
    return RedisSettings(
        host=_addresses(settings),
        sentinel=True,
        sentinel_master=cfg.service,
        password=cfg.password,
        database=cfg.db,
        conn_timeout=int(CONNECT_TIMEOUT),
    )


async def replicated(redis: Redis, settings: Settings) -> None:
    """Return once ``redis_sentinel.min_replicas_acked`` replicas hold every write this process
    made before the call, on any connection; raise ``NotReplicated`` if they do not within
    ``ack_timeout_ms``. A no-op without Sentinel or with the setting at 0.

    WAIT covers the writes of its own connection only, and a pooled client spreads writes over
    several: a write to a fence key right before it, on the same connection, comes after all
    of them in the replication stream, so a replica that has the fence has the rest."""
    cfg = settings.redis_sentinel
    if not cfg.sentinels or cfg.min_replicas_acked <= 0:
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(keys.REPLICATION_FENCE)
        pipe.execute_command("WAIT", cfg.min_replicas_acked, cfg.ack_timeout_ms)
        _, acked = await pipe.execute()
    if int(acked) < cfg.min_replicas_acked:
        raise NotReplicated(
            f"{acked} of {cfg.min_replicas_acked} replicas confirmed the write within {cfg.ack_timeout_ms} ms"
        )


def wait_until_reachable(settings: Settings, *, first: float = 0.2, most: float = 5.0) -> None:
    """Block until the primary answers a PING (asked through the sentinels when configured),
    trying again with a growing pause."""
    delay = first
    while True:
        client = _sync_client(settings)
        try:
            if client.ping():
                return
        except RedisError:
            pass
        finally:
            client.close()
        time.sleep(delay)
        delay = min(most, delay * 2)


def _sync_client(settings: Settings) -> SyncRedis:
    cfg = settings.redis_sentinel
    if not cfg.sentinels:
        return SyncRedis.from_url(str(settings.redis_url), socket_connect_timeout=CONNECT_TIMEOUT)
    sentinel = SyncSentinel(_addresses(settings), **_sentinel_options())  # type: ignore[no-untyped-call]
    client: SyncRedis = sentinel.master_for(cfg.service, password=cfg.password, db=cfg.db)  # type: ignore[no-untyped-call]
    return client

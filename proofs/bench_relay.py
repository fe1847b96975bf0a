"""``hub bench relay``: allocations/s and routing latency of the masked-number relay, beside a
bare Redis ``GET`` measured in the same run (docs/relay.md#benchmark)."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from hub.config import load_settings
from hub.redis_server import EmbeddedRedis, free_port
from hub.relay import PoolExhausted, Relay

from .common import ROOT, hub_env, pct, spawn, stop_all, wait_http

__all__ = ["run_relay_bench"]


async def _bench_relay(args: argparse.Namespace) -> dict[str, Any]:
    """Allocations/s and routing latency of the masked-number relay, beside a bare Redis GET."""
    n = args.events
    pool = [f"+150055501{i:02d}" for i in range(20)]
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-relay-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = load_settings(ROOT / "config.yaml", environ={}, redis_url=redis_server.url, **{"relay.pool": pool})
        r = Redis.from_url(redis_server.url, decode_responses=True)
        await r.set("bench:probe", "1")
        gets = []
        for _ in range(n):
            t = time.perf_counter()
            await r.get("bench:probe")
            gets.append(time.perf_counter() - t)
        relay = Relay(r, settings)
        drivers = [f"+4915700{i:06d}" for i in range(max(1, n // 10))]
        start = time.perf_counter()
        opened = []
        for i in range(n):
            try:
                session, _ = await relay.open(f"RD-{i}", drivers[i % len(drivers)], f"+4915112{i:06d}")
                opened.append(session)
            except PoolExhausted:
                pass
        alloc_per_s = n / (time.perf_counter() - start)
        routes = []
        for session in opened:
            t = time.perf_counter()
            await relay.route(session["customer"], session["customer_proxy"])
            routes.append(time.perf_counter() - t)
        # The whole webhook: signed POST to `hub api`, TwiML back.
        api_port = free_port()
        env = hub_env(
            redis_server.url,
            api_port,
            HUB_TWILIO__BASE_URL="http://127.0.0.1:9/unused",
            HUB_RELAY__POOL=json.dumps(pool),
        )
        procs.append(spawn(["-m", "hub", "api"], env))
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        url = f"http://127.0.0.1:{api_port}/webhooks/twilio/voice"
        validator = RequestValidator(settings.twilio.auth_token)
        hooks = []
        async with aiohttp.ClientSession() as http:
            for session in opened[: min(len(opened), n)]:
                form = {"CallSid": "CA" + session["id"], "From": session["customer"], "To": session["customer_proxy"]}
                headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
                t = time.perf_counter()
                async with http.post(url, data=form, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200
                hooks.append(time.perf_counter() - t)
        await r.aclose()
        ms = 1000.0
        return {
            "sessions_opened": len(opened),
            "attempts": n,
            "allocations_per_s": alloc_per_s,
            "redis_get_ms": {"p50": pct(gets, 50) * ms, "p99": pct(gets, 99) * ms},
            "route_ms": {"p50": pct(routes, 50) * ms, "p99": pct(routes, 99) * ms},
            "webhook_ms": {"p50": pct(hooks, 50) * ms, "p99": pct(hooks, 99) * ms},
            "redis_gets_per_s": 1 / statistics.fmean(gets),
        }
    finally:
        stop_all(procs)
        redis_server.stop()


def run_relay_bench(args: argparse.Namespace) -> int:
    r = asyncio.run(_bench_relay(args))
    print(f"relay: {r['attempts']} opens against a pool of 20 ({r['sessions_opened']} served)\n")
    print(f"{'figure':<40}{'p50':>9}{'p99':>9}  ratio p99 to a bare Redis GET")
    g = r["redis_get_ms"]
    print(f"{'bare Redis GET (ceiling)':<40}{g['p50']:>7.2f}ms{g['p99']:>7.2f}ms")
    for name, key in (
        ("routing lookup (Relay.route)", "route_ms"),
        ("voice webhook, signed, end to end", "webhook_ms"),
    ):
        v = r[key]
        print(f"{name:<40}{v['p50']:>7.2f}ms{v['p99']:>7.2f}ms  {v['p99'] / g['p99']:.1f}x")
    print(f"{'allocations /s':<40}{r['allocations_per_s']:>9.0f}  ({r['redis_gets_per_s']:.0f} Redis GETs/s)")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0

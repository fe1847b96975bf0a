"""``hub bench location``: driver positions/s through ``POST /v1/deliveries/{id}/location``, beside
the API's trivial ``GET /healthz`` measured in the same run, and what one position costs Redis
(INFO commandstats, commands inside Lua included) (docs/benchmarks.md#driver-positions)."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from hub.redis_server import EmbeddedRedis, free_port

from .common import BENCH_KEY, calls_per_second, hub_env, spawn, stop_all, wait_http

__all__ = ["run_location_bench"]

CLIENTS = 20  # driver apps posting at once
DELIVERIES = 50  # each on its own round, so positions do not all contend for one key


async def _on_the_road(http: aiohttp.ClientSession, base: str, now: datetime) -> None:
    """``DELIVERIES`` deliveries out for delivery (through the worker), for customers without
    contacts: nothing is sent, only the deliveries' state matters here."""
    events = [
        {
            "event_id": f"bench-loc-{i}",
            "type": "out_for_delivery",
            "occurred_at": now.isoformat(),
            "delivery": {"id": f"D-LOC-{i}"},
            "customer": {"id": f"C-LOC-{i}"},
        }
        for i in range(DELIVERIES)
    ]
    async with http.post(f"{base}/v1/events/batch", json={"events": events}) as resp:
        assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + 60
    for i in range(DELIVERIES):
        while True:
            async with http.get(f"{base}/v1/deliveries/D-LOC-{i}") as resp:
                if resp.status == 200 and (await resp.json()).get("status") == "out_for_delivery":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not apply the events within 60 s")
            await asyncio.sleep(0.1)


async def _bench_location(args: argparse.Namespace) -> dict[str, Any]:
    n = args.events
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-location-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    procs: list[subprocess.Popen[bytes]] = []
    redis = Redis.from_url(redis_server.url)
    try:
        api_port = free_port()
        env = hub_env(redis_server.url, api_port)
        procs += [spawn(["-m", "hub", "api"], env), spawn(["-m", "hub", "worker"], env, quiet=True)]
        base = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{base}/healthz")
        now = datetime.now(UTC)
        headers = {"Authorization": f"Bearer {BENCH_KEY}"}
        statuses: dict[int, int] = {}
        async with aiohttp.ClientSession(headers=headers) as http:
            await _on_the_road(http, base, now)

            async def health(i: int) -> None:
                async with http.get(f"{base}/healthz") as resp:
                    await resp.read()

            async def position(i: int) -> None:
                at = (now + timedelta(milliseconds=i)).isoformat()
                body = {"lat": 52.5 + i * 1e-6, "lon": 13.4, "at": at, "stops_before": 3}
                async with http.post(f"{base}/v1/deliveries/D-LOC-{i % DELIVERIES}/location", json=body) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    await resp.read()

            await calls_per_second(min(n, 500), health, CLIENTS)  # warm both paths' connections and caches
            ceiling = [await calls_per_second(n, health, CLIENTS)]
            await redis.config_resetstat()
            positions = await calls_per_second(n, position, CLIENTS)
            stats = await redis.info("commandstats")
            ceiling.append(await calls_per_second(n, health, CLIENTS))
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        healthz = sum(ceiling) / len(ceiling)
        return {
            "positions": n,
            "clients": CLIENTS,
            "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
            "positions_per_s": positions,
            "healthz_per_s": healthz,
            "ratio_positions_vs_healthz": positions / healthz,
            "redis_commands_per_position": sum(calls.values()) / n,
            "redis_commands_by_name_per_position": {k: v / n for k, v in sorted(calls.items())},
        }
    finally:
        await redis.aclose()
        stop_all(procs)
        redis_server.stop()


def run_location_bench(args: argparse.Namespace) -> int:
    r = asyncio.run(_bench_location(args))
    print(f"location: {r['positions']} positions from {r['clients']} driver apps at once\n")
    print(f"{'figure':<44}{'per s':>10}  ratio")
    print(f"{'GET /healthz (ceiling, same run)':<44}{r['healthz_per_s']:>10.0f}")
    print(
        f"{'POST /v1/deliveries/{id}/location':<44}{r['positions_per_s']:>10.0f}  {r['ratio_positions_vs_healthz']:.2f}"
    )
    by_name = ", ".join(f"{k} {v:.2f}" for k, v in r["redis_commands_by_name_per_position"].items())
    print(f"Redis commands per position: {r['redis_commands_per_position']:.2f} ({by_name})")
    print(f"answers: {r['answers_by_status']}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0 if r["answers_by_status"] == {"200": r["positions"]} else 1

"""``hub bench availability``: customers x windows answered per second by ``POST
/v1/availability/query``, beside the API's trivial ``GET /healthz`` measured in the same run, what
one route's query costs Redis (INFO commandstats), and one query at the API's limit (500
customers x 50 windows) (docs/availability.md#how-fast).

The evidence is written first by the hub's own ``Availability.learn`` (the worker's step) straight
into the bench's Redis: ``--events`` customers, each with two mornings nobody home and two
evenings delivered, spread over ten areas, so every query reads real observations and pools.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from hub.availability import Availability
from hub.config import Settings
from hub.redis_server import EmbeddedRedis, free_port
from preferences import CustomerRecord

from .common import BENCH_KEY, calls_per_second, hub_env, spawn, stop_all, wait_http

__all__ = ["run_availability_bench"]

CLIENTS = 8  # route planners asking at once
ROUTE = 100  # customers per query: one driver's route
WINDOWS = 10  # candidate windows per customer
AREAS = 10
JSON = {"Content-Type": "application/json"}
ATTEMPTS = [  # (occurred_at, delivered?): a Tuesday and a Wednesday in Berlin
    ("2026-11-24T09:30:00+01:00", False),
    ("2026-11-25T09:30:00+01:00", False),
    ("2026-11-24T18:30:00+01:00", True),
    ("2026-11-25T18:30:00+01:00", True),
]


def _windows() -> list[dict[str, str]]:
    """Two-hour candidate windows through a Tuesday, 08:00 to 22:00, then the next morning."""
    hours = [8, 9, 10, 12, 14, 16, 17, 18, 20]
    day = [{"start": f"2026-12-01T{h:02d}:00:00+01:00", "end": f"2026-12-01T{h + 2:02d}:00:00+01:00"} for h in hours]
    return [*day, {"start": "2026-12-02T08:00:00+01:00", "end": "2026-12-02T10:00:00+01:00"}][:WINDOWS]


async def _learn(redis: Redis, customers: int) -> None:
    """What the worker would have learned from each customer's four attempts."""
    availability = Availability(redis, Settings())
    gate = asyncio.Semaphore(64)

    async def one(i: int, n: int, at: str, home: bool) -> None:
        event = {
            "event_id": f"bench-av-{i}-{n}",
            "type": "delivered" if home else "delivery_failed",
            "occurred_at": at,
            "delivery": {"id": f"D-AV-{i}-{n}", "area": f"area-{i % AREAS}"},
            "data": {} if home else {"reason_code": "nobody_home"},
        }
        async with gate:
            await availability.learn("default", event, CustomerRecord(id=f"C-AV-{i}", timezone="Europe/Berlin"))

    await asyncio.gather(*(one(i, n, at, home) for i in range(customers) for n, (at, home) in enumerate(ATTEMPTS)))


def _route(i: int, customers: int, size: int, windows: list[dict[str, str]]) -> dict[str, Any]:
    first = (i * size) % customers
    return {"queries": [{"customer_id": f"C-AV-{(first + k) % customers}", "windows": windows} for k in range(size)]}


async def _bench_availability(args: argparse.Namespace) -> dict[str, Any]:
    customers = max(args.events, ROUTE)
    queries = max(20, customers // 20)
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-availability-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    procs: list[subprocess.Popen[bytes]] = []
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await _learn(redis, customers)
        api_port = free_port()
        procs.append(spawn(["-m", "hub", "api"], hub_env(redis_server.url, api_port)))
        base = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{base}/healthz")
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        sample: dict[str, Any] = {}
        windows = _windows()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BENCH_KEY}"}) as http:

            async def health(i: int) -> None:
                async with http.get(f"{base}/healthz") as resp:
                    await resp.read()

            async def query(i: int, size: int = ROUTE, asked: list[dict[str, str]] = windows) -> None:
                start = time.perf_counter()
                # A stream, not bytes: aiohttp warns that a large body sent whole may hold the loop.
                body = io.BytesIO(json.dumps(_route(i, customers, size, asked)).encode())
                async with http.post(f"{base}/v1/availability/query", data=body, headers=JSON) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    found = await resp.json()
                latencies.append(time.perf_counter() - start)
                sample.setdefault("first", found)

            await calls_per_second(200, health, CLIENTS)  # warm both paths' connections
            await calls_per_second(CLIENTS, query, CLIENTS)
            ceiling = [await calls_per_second(queries * 10, health, CLIENTS)]
            latencies.clear()
            await redis.config_resetstat()
            per_s = await calls_per_second(queries, query, CLIENTS)
            stats = await redis.info("commandstats")
            route_latencies = sorted(latencies)
            ceiling.append(await calls_per_second(queries * 10, health, CLIENTS))
            widest = [{"start": w["start"], "end": w["end"]} for w in (windows * 5)[:50]]
            latencies.clear()
            await query(0, 500, widest)
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        healthz = sum(ceiling) / len(ceiling)
        first = sample["first"]["results"][0]["windows"]
        return {
            "customers": customers,
            "queries": queries,
            "clients": CLIENTS,
            "customers_per_query": ROUTE,
            "windows_per_customer": WINDOWS,
            "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
            "queries_per_s": per_s,
            "answers_per_s": per_s * ROUTE * WINDOWS,
            "healthz_per_s": healthz,
            "ratio_queries_vs_healthz": per_s / healthz,
            "query_ms": {
                "p50": statistics.median(route_latencies) * 1000,
                "p99": route_latencies[int(0.99 * (len(route_latencies) - 1))] * 1000,
            },
            "largest_query_ms": latencies[-1] * 1000,
            "redis_commands_per_query": sum(calls.values()) / queries,
            "redis_commands_by_name_per_query": {k: v / queries for k, v in sorted(calls.items())},
            "evening_over_morning": first[6]["p_home"] > first[0]["p_home"],  # 17-19 against 08-10
        }
    finally:
        await redis.aclose()
        stop_all(procs)
        redis_server.stop()


def run_availability_bench(args: argparse.Namespace) -> int:
    r = asyncio.run(_bench_availability(args))
    print(
        f"availability: {r['queries']} queries of {r['customers_per_query']} customers x {r['windows_per_customer']}"
        f" windows from {r['clients']} planners at once, over {r['customers']} learned customers\n"
    )
    print(f"{'figure':<44}{'per s':>12}  ratio")
    print(f"{'GET /healthz (ceiling, same run)':<44}{r['healthz_per_s']:>12.0f}")
    ratio = r["ratio_queries_vs_healthz"]
    print(f"{'POST /v1/availability/query (requests)':<44}{r['queries_per_s']:>12.1f}  {ratio:.3f}")
    print(f"{'  customers x windows answered':<44}{r['answers_per_s']:>12.0f}")
    print(
        f"query latency: p50 {r['query_ms']['p50']:.1f} ms, p99 {r['query_ms']['p99']:.1f} ms;"
        f" one query of 500 x 50: {r['largest_query_ms']:.0f} ms"
    )
    by_name = ", ".join(f"{k} {v:.1f}" for k, v in r["redis_commands_by_name_per_query"].items())
    print(f"Redis commands per query: {r['redis_commands_per_query']:.1f} ({by_name})")
    print(f"answers: {r['answers_by_status']}; evening likelier than morning: {r['evening_over_morning']}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(r, indent=2))
    ok = r["answers_by_status"] == {"200": r["queries"] + r["clients"] + 1} and r["evening_over_morning"]
    return 0 if ok else 1

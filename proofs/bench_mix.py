"""``hub bench mix``: the pipeline with the delivery policy at work, beside the same ceilings.

A realistic mix on the wall clock of the run:

- a fifth of the customers live where it is night now (a time zone chosen at run time): their
  ``out_for_delivery`` messages are held for the morning, their ``arriving_soon`` (urgent) go out;
- one delivery in ten gets a burst of five ``eta_changed`` updates: one message per channel
  leaves after the collapsing window (shortened to 2 s so the run stays short);
- Twilio fails its first requests with HTTP 500 (one SMS in ten), so those messages retry;
- senders are paced through Redis (SMS 200/s, e-mail 100/s) and per-customer limits apply.

It waits until the providers hold every message that should go out now and every held message
is recorded as deferred, then prints the throughput beside the arq no-op ceiling, the latency of
the messages sent at once, and the policy's counts (held, collapsed, retried, doubled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from hub.config_policy import QuietWindow
from hub.policy import quiet_until
from hub.redis_server import EmbeddedRedis

from .common import (
    BENCH_KEY,
    arq_noop_ceiling,
    count_statuses,
    cpu_seconds,
    pct,
    post_all,
    redis_info,
    start_stack,
    stop_all,
)

__all__ = ["run_mix_bench"]

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
)
NIGHT = QuietWindow(start="21:00", end="08:00")


def pick_zones(now: float) -> tuple[str, str]:
    """A zone where it is night (quiet for at least another 30 min) and one where it is day."""
    night = next(z for z in ZONES if (quiet_until(now, z, NIGHT) or 0) > now + 1800)
    day = next(z for z in ZONES if quiet_until(now, z, NIGHT) is None and quiet_until(now + 1800, z, NIGHT) is None)
    return night, day


def mix_events(n: int, run: str, night: str, day: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The events of a run and what they should produce now: messages sent, messages held."""
    now = datetime.now(UTC)
    eta = {"start": (now + timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=3)).isoformat()}
    events: list[dict[str, Any]] = []
    expect = Counter[str]()
    for i in range(n):
        at_night = i % 5 == 0
        kind = "out_for_delivery" if i % 2 == 0 else "arriving_soon"
        customer = {
            "id": f"MC-{run}-{i}",
            "name": "Ana Weber",
            "phone": f"+49151{10000000 + i}",
            "email": f"m{i}@example.com",
            "push_tokens": [f"mix-token-{i}"],
            "locale": ("de-DE", "en", "es", "fr")[i % 4],
            "timezone": night if at_night else day,
        }
        delivery = {"id": f"MD-{run}-{i}", "tracking_code": f"LM{200000000 + i}", "merchant": "Acme", "eta": eta}
        base = {"delivery": delivery, "customer": customer, "driver": {"id": "DR-5", "name": "Sam"}}
        count = 3 if kind == "out_for_delivery" else 2
        if kind == "out_for_delivery" and at_night:
            expect["held"] += count
        else:
            expect["sent"] += count
        events.append(
            {
                "event_id": f"mix{run}-{i}",
                "type": kind,
                "occurred_at": now.isoformat(),
                "data": {"minutes": 10} if kind == "arriving_soon" else {},
                **base,
            }
        )
        if i % 10 == 1:  # a day customer whose ETA moves five times in a few seconds
            for k in range(5):
                moved = {
                    "start": (now + timedelta(minutes=70 + k)).isoformat(),
                    "end": (now + timedelta(minutes=190 + k)).isoformat(),
                }
                events.append(
                    {
                        "event_id": f"mix{run}-{i}-eta{k}",
                        "type": "eta_changed",
                        "occurred_at": (now + timedelta(seconds=k + 1)).isoformat(),
                        **base,
                        # A second parcel of the customer's: its updates cannot make the first
                        # parcel's event stale, whatever order the workers take them in.
                        "delivery": {**delivery, "id": f"{delivery['id']}-b", "eta": moved},
                    }
                )
            expect["sent"] += 2  # push + SMS of the newest update only
            expect["collapsed"] += 4 * 2
    return events, dict(expect)


def _doubled(events: list[dict[str, Any]], ledger: list[dict[str, Any]], night: str) -> int:
    """Messages beyond what each address should have received by now."""
    allowed = Counter[str]()
    for e in events:
        c = e["customer"]
        if e["type"] == "eta_changed":
            continue
        if e["type"] == "out_for_delivery" and c["timezone"] == night:
            continue
        allowed.update([c["phone"], c["push_tokens"][0]] + ([c["email"]] if e["type"] == "out_for_delivery" else []))
    bursts = {e["customer"]["id"]: e["customer"] for e in events if e["type"] == "eta_changed"}
    for c in bursts.values():
        allowed.update([c["phone"], c["push_tokens"][0]])
    got = Counter(m["to"] for m in ledger)
    return sum(max(0, count - allowed[to]) for to, count in got.items())


async def _held(redis_url: str) -> int:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    try:
        return int(await r.zcard("hub:msgs:status:deferred"))
    finally:
        await r.aclose()


async def _bench_mix(args: argparse.Namespace) -> dict[str, Any]:
    n, workers, concurrency, max_jobs = args.events, args.workers, args.concurrency, 100
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-mix-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    procs: list[subprocess.Popen[bytes]] = []
    night, day = pick_zones(time.time())
    run = str(int(time.time()))
    events, expect = mix_events(n, run, night, day)
    result: dict[str, Any] = {
        "events": len(events),
        "workers": workers,
        "concurrency": concurrency,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "night_zone": night,
        "day_zone": day,
        "expected": expect,
    }
    try:
        print(f"bench mix: {len(events)} events; night in {night}, day in {day}", flush=True)
        result["arq_noop_jobs_per_s"] = await arq_noop_ceiling(redis.url, len(events), workers, max_jobs, concurrency)
        stack = await start_stack(
            redis.url,
            workers,
            max_jobs,
            HUB_WORKER__RETRY_BASE_DELAY="0.5",
            HUB_POLICY__COLLAPSE_SECONDS="2",
            HUB_POLICY__SENDER_RATE="{sms: 200, email: 100, push: 0}",
        )
        procs += stack.procs
        sandbox_proc, api, worker_procs = stack.sandbox, stack.api, stack.workers
        sandbox_port, api_port, origin = stack.sandbox_port, stack.api_port, stack.origin
        flaky = max(1, expect["sent"] // 20)  # about one SMS in ten (SMS are about half the messages)
        async with aiohttp.ClientSession() as http:
            await http.post(f"{origin}/faults", json={"provider": "twilio", "mode": "500", "count": flaky})

        bodies = [json.dumps(e).encode() for e in events]
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in [api, sandbox_proc, *worker_procs]}
        start_wall = time.time()
        post_elapsed, sent_at = await post_all(
            f"http://127.0.0.1:{api_port}/v1/events",
            bodies,
            concurrency,
            {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
        )
        result["accepted_events_per_s"] = len(events) / post_elapsed
        deadline = time.perf_counter() + max(60.0, n / 10)
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/count") as resp:
                    sent = sum((await resp.json()).values())
                held = await _held(redis.url)
                if sent >= expect["sent"] and held >= expect["held"]:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"{sent} of {expect['sent']} sent, {held} of {expect['held']} held;"
                        f" statuses {dict(await count_statuses(redis.url))}"
                    )
                await asyncio.sleep(0.25)
            done_wall = time.time()
        await asyncio.sleep(1.0)  # late duplicates, if any, would land now
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{sandbox_port}/bench/dump") as resp:
            ledger = await resp.json()
        statuses = await count_statuses(redis.url)
        cpu = sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in worker_procs)
        index_of: dict[str, int] = {}
        for i, e in enumerate(events):
            if e["type"] != "eta_changed":  # collapsed updates wait on purpose
                c = e["customer"]
                for address in (c["phone"], c["email"], c["push_tokens"][0]):
                    index_of.setdefault(address, i)
        latencies = [
            datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp() - sent_at[index_of[m["to"]]]
            for m in ledger
            if m["to"] in index_of
        ]
        handled = len(events) / (done_wall - start_wall)
        info = await redis_info(redis.url)
        result.update(
            {
                "handled_events_per_s": handled,
                "ratio_handled_vs_arq_noop": handled / result["arq_noop_jobs_per_s"],
                "messages_sent": len(ledger),
                "duplicates": _doubled(events, ledger, night),
                "statuses": dict(statuses),
                "latency_s": {"p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99)},
                "worker_cpu_s_per_1000_events": cpu / len(events) * 1000,
                "redis_bytes_per_event": info["used_memory"] / len(events),
            }
        )
        return result
    finally:
        stop_all(procs)
        redis.stop()


def _report(r: dict[str, Any]) -> str:
    st, exp, lat = r["statuses"], r["expected"], r["latency_s"]
    return "\n".join(
        [
            f"machine: {r['cpus']} CPUs, Python {r['python']}; {r['events']} events, {r['workers']} worker process(es)",
            f"night in {r['night_zone']}, day in {r['day_zone']}",
            "",
            f"{'figure':<40}{'value':>10}  {'ceiling (same run)':>22}  {'ratio':>6}",
            f"{'events accepted /s':<40}{r['accepted_events_per_s']:>10.0f}",
            f"{'events handled /s (sent or held)':<40}{r['handled_events_per_s']:>10.0f}  "
            f"{r['arq_noop_jobs_per_s']:>10.0f} arq no-op/s  {r['ratio_handled_vs_arq_noop']:>6.2f}",
            f"{'latency of messages sent at once p50':<40}{lat['p50'] * 1000:>8.0f}ms",
            f"{'... p95':<40}{lat['p95'] * 1000:>8.0f}ms",
            f"{'... p99':<40}{lat['p99'] * 1000:>8.0f}ms",
            f"{'worker CPU s / 1,000 events':<40}{r['worker_cpu_s_per_1000_events']:>10.2f}",
            f"{'Redis bytes per event (all state)':<40}{r['redis_bytes_per_event']:>10.0f}",
            "",
            f"{'sent (expected)':<40}{r['messages_sent']:>10} ({exp['sent']})",
            f"{'held for quiet hours (expected)':<40}{st.get('deferred', 0):>10} ({exp['held']})",
            f"{'collapsed ETA updates (expected)':<40}{st.get('superseded', 0):>10} (up to {exp['collapsed']})",
            f"{'sent twice':<40}{r['duplicates']:>10}",
            f"{'dead / unknown':<40}{st.get('dead', 0):>10} / {st.get('unknown', 0)}",
        ]
    )


def run_mix_bench(args: argparse.Namespace) -> int:
    result = asyncio.run(_bench_mix(args))
    print()
    print(_report(result))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    ok = result["messages_sent"] == result["expected"]["sent"] and result["duplicates"] == 0
    return 0 if ok else 1

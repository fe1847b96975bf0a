"""``hub bench peak``: a delivery day for M customers, compressed into a few minutes.

Each customer's parcel goes through the day's milestones, posted in waves as the day would
bring them: ``order_confirmed``, ``shipped``, ``out_for_delivery``, a burst of ETA updates for
one parcel in ten, ``arriving_soon``, ``delivered``. A wave is posted once the one before it is
handled, as hours apart would leave it. The customers are a realistic crowd:

- contacts: 40 % push only, 30 % phone only, 10 % e-mail only, 20 % phone and e-mail (two
  channels for the milestones that use both); the channels then follow config.yaml's defaults;
- 1 % have a push token the provider no longer knows (and a phone): the push fails for good and
  the message falls back to SMS;
- a fifth live where it is night at the time of the run (a time zone chosen at run time): their
  non-urgent messages are held for the morning, their ``arriving_soon`` goes out at once;
- the ETA bursts are five ``eta_changed`` a second apart: one message per channel leaves after
  the collapsing window (shortened to 2 s for the run);
- Twilio answers HTTP 500 to one SMS request in twenty, so those retry.

As in production, Twilio reports every SMS's ``sent`` and ``delivered`` through status
callbacks, and an upstream receiver is subscribed to every webhook type.

It reports events handled per second (every event processed and its messages sent, held,
collapsed or fallen back; the deliberate waits for collapsing windows left out) beside the arq
no-op ceiling with the same workers, the latency of messages sent at once, the message log's
statuses, the webhooks received and the status callbacks applied, and checks that the providers
received each accepted message exactly once and the receiver every webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from hub.redis_server import EmbeddedRedis

from .bench_mix import pick_zones
from .common import (
    BENCH_KEY,
    arq_noop_ceiling,
    count_statuses,
    cpu_seconds,
    memory_breakdown,
    pct,
    post_all,
    redis_info,
    start_stack,
    stop_all,
)
from .webhook_check import settle_webhooks, webhook_figures, webhook_lines, webhooks_ok

__all__ = ["peak_customers", "run_peak_bench"]

COLLAPSE_SECONDS = 2
WAVES = ("order_confirmed", "shipped", "out_for_delivery", "eta_changed", "arriving_soon", "delivered")


def peak_customers(m: int, run: str, night: str, day: str) -> list[dict[str, Any]]:
    out = []
    for i in range(m):
        kind = i % 10
        c: dict[str, Any] = {
            "id": f"PC-{run}-{i}",
            "name": "Ana Weber",
            "locale": ("de-DE", "en", "es", "fr")[i % 4],
            "timezone": night if i % 5 == 0 else day,
        }
        if kind <= 3:
            c["push_tokens"] = [f"peak-token-{run}-{i}"]
        if 4 <= kind <= 6 or kind >= 8:
            c["phone"] = f"+49152{10000000 + i}"
        if kind >= 7:
            c["email"] = f"p{i}@example.com"
        if i % 100 == 3:  # a push-only customer whose app was uninstalled; reachable by SMS
            c["push_tokens"] = [f"unregistered-{run}-{i}"]
            c["phone"] = f"+49152{10000000 + i}"
        out.append(c)
    return out


def wave_events(wave: str, customers: list[dict[str, Any]], run: str, at: datetime) -> list[dict[str, Any]]:
    eta = {"start": (at + timedelta(hours=1)).isoformat(), "end": (at + timedelta(hours=3)).isoformat()}
    events = []
    for i, c in enumerate(customers):
        delivery = {"id": f"PD-{run}-{i}", "tracking_code": f"LM{300000000 + i}", "merchant": "Acme", "eta": eta}
        base = {"delivery": delivery, "customer": c, "driver": {"id": "DR-5", "name": "Sam"}}
        if wave == "eta_changed":
            if i % 10 != 1:
                continue
            for k in range(5):
                moved = {
                    "start": (at + timedelta(minutes=70 + k)).isoformat(),
                    "end": (at + timedelta(minutes=190 + k)).isoformat(),
                }
                events.append(
                    {
                        "event_id": f"peak{run}-{i}-eta{k}",
                        "type": "eta_changed",
                        "occurred_at": (at + timedelta(seconds=k)).isoformat(),
                        **base,
                        "delivery": {**delivery, "eta": moved},
                    }
                )
            continue
        data: dict[str, Any] = {}
        if wave == "arriving_soon":
            data = {"minutes": 10}
        elif wave == "delivered":
            data = {"proof": {"recipient": "A. Weber", "left_at": "front door"}}
        events.append(
            {"event_id": f"peak{run}-{i}-{wave}", "type": wave, "occurred_at": at.isoformat(), **base, "data": data}
        )
    return events


async def _states_done(redis: Redis, ids: list[str]) -> bool:
    async with redis.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.hget(f"hub:event:default:{event_id}", "state")
        states = await pipe.execute()
    return all(s == "done" for s in states) and not await redis.zcard("hub:msgs:status:transient")


async def _bench_peak(args: argparse.Namespace) -> dict[str, Any]:
    m, workers, concurrency, max_jobs = args.events, args.workers, args.concurrency, 100
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-peak-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    night, day = pick_zones(time.time())
    run = str(int(time.time()))
    customers = peak_customers(m, run, night, day)
    result: dict[str, Any] = {
        "customers": m,
        "workers": workers,
        "concurrency": concurrency,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "night_zone": night,
        "day_zone": day,
    }
    procs = []
    try:
        print(f"bench peak: {m} customers; night in {night}, day in {day}", flush=True)
        result["arq_noop_jobs_per_s"] = await arq_noop_ceiling(redis_server.url, 6 * m, workers, max_jobs, concurrency)
        stack = await start_stack(
            redis_server.url,
            workers,
            max_jobs,
            status_callbacks=True,
            subscriber=True,
            HUB_WORKER__RETRY_BASE_DELAY="0.5",
            HUB_POLICY__COLLAPSE_SECONDS=str(COLLAPSE_SECONDS),
            HUB_POLICY__SENDER_RATE="{sms: 0, email: 0, push: 0}",
        )
        procs = stack.procs
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in procs}
        now = datetime.now(UTC)
        busy = 0.0  # seconds spent posting and processing, the collapsing waits left out
        posted = 0
        latencies: list[float] = []
        async with aiohttp.ClientSession() as http:
            for w, wave in enumerate(WAVES):
                events = wave_events(wave, customers, run, now + timedelta(minutes=w))
                if not events:
                    continue
                async with http.get(f"{stack.origin}/faults") as resp:
                    faults = await resp.json()
                if not (faults.get("twilio") or {}).get("mode"):
                    flaky = max(1, len(events) // 20)
                    await http.post(
                        f"{stack.origin}/faults", json={"provider": "twilio", "mode": "500", "count": flaky}
                    )
                before = len(await _dump(http, stack.sandbox_port))
                started = time.perf_counter()
                _, sent_at = await post_all(
                    f"http://127.0.0.1:{stack.api_port}/v1/events",
                    [json.dumps(e).encode() for e in events],
                    concurrency,
                    headers,
                )
                ids = [e["event_id"] for e in events]
                if wave == "eta_changed":
                    await asyncio.sleep(COLLAPSE_SECONDS + 0.5)  # the window: not counted as work
                    started += COLLAPSE_SECONDS + 0.5
                deadline = time.perf_counter() + max(120.0, len(events) / 5)
                while not await _states_done(redis, ids):
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"wave {wave} not handled in time")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)  # the last sends of the wave land
                busy += time.perf_counter() - started
                posted += len(events)
                ledger = await _dump(http, stack.sandbox_port)
                first_post: dict[str, float] = {}
                for i, e in enumerate(events):
                    c = e["customer"]
                    for address in (c.get("phone"), c.get("email"), *(c.get("push_tokens") or [])):
                        if address:
                            first_post.setdefault(address, sent_at[i])
                if wave != "eta_changed":
                    latencies += [
                        _ts(entry["received_at"]) - first_post[entry["to"]]
                        for entry in ledger[before:]
                        if entry["to"] in first_post
                    ]
                print(f"bench peak: {wave}: {len(events)} events, {len(ledger) - before} messages", flush=True)
            ledger = await _dump(http, stack.sandbox_port)
        settled = await settle_webhooks(redis_server.url, stack.receiver_url)
        cpu = {p.pid: cpu_seconds(p.pid) - cpu_before[p.pid] for p in procs}
        statuses = await count_statuses(redis_server.url)
        info = await redis_info(redis_server.url)
        memory = await memory_breakdown(redis_server.url)
        keys = Counter((e["channel"], e["to"], e["digest"]) for e in ledger)
        result.update(
            {
                "events": posted,
                "handled_events_per_s": posted / busy,
                "messages_sent": len(ledger),
                "messages_by_channel": dict(Counter(e["channel"] for e in ledger)),
                "doubled": sum(n - 1 for n in keys.values() if n > 1),
                "statuses": dict(statuses),
                "latency_s": {"p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99)},
                "cpu_s_per_1000_events": {
                    "api": cpu[stack.api.pid] / posted * 1000,
                    "workers": sum(cpu[p.pid] for p in stack.workers) / posted * 1000,
                    "sandbox": cpu[stack.sandbox.pid] / posted * 1000,
                    "receiver": cpu[stack.receiver.pid] / posted * 1000 if stack.receiver else 0.0,
                },
                "redis_bytes_per_customer_all_state": info["used_memory"] / m,
                "memory": memory,
                "webhooks": {
                    **await webhook_figures(
                        redis_server.url, stack.receiver_url, sum(1 for e in ledger if e["channel"] == "sms")
                    ),
                    "settled": settled,
                },
            }
        )
        result["ratio_handled_vs_arq_noop"] = result["handled_events_per_s"] / result["arq_noop_jobs_per_s"]
        return result
    finally:
        await redis.aclose()
        stop_all(procs)
        redis_server.stop()


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _dump(http: aiohttp.ClientSession, sandbox_port: int) -> list[dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/dump") as resp:
        entries: list[dict[str, Any]] = await resp.json()
        return entries


def _report(r: dict[str, Any]) -> str:
    st, lat, cpu, mem = r["statuses"], r["latency_s"], r["cpu_s_per_1000_events"], r["memory"]
    return "\n".join(
        [
            f"machine: {r['cpus']} CPUs, Python {r['python']}; {r['customers']} customers, {r['events']} events, "
            f"{r['workers']} worker process(es); night in {r['night_zone']}, day in {r['day_zone']}",
            "",
            f"{'figure':<44}{'value':>10}  {'ceiling (same run)':>22}  {'ratio':>6}",
            f"{'events handled /s':<44}{r['handled_events_per_s']:>10.0f}  "
            f"{r['arq_noop_jobs_per_s']:>10.0f} arq no-op/s  {r['ratio_handled_vs_arq_noop']:>6.2f}",
            f"{'latency of messages sent at once p50':<44}{lat['p50'] * 1000:>8.0f}ms",
            f"{'... p95':<44}{lat['p95'] * 1000:>8.0f}ms",
            f"{'... p99':<44}{lat['p99'] * 1000:>8.0f}ms",
            f"{'CPU s / 1,000 events: api / workers / fakes':<44}{cpu['api']:>6.2f} / {cpu['workers']:.2f} / "
            f"{cpu['sandbox']:.2f} (subscriber {cpu['receiver']:.2f})",
            f"{'Redis bytes per customer (all state)':<44}{r['redis_bytes_per_customer_all_state']:>10.0f}",
            f"{'Redis bytes per customer / delivery / message':<44}{mem['customer']:>10.0f} / "
            f"{mem['delivery']:.0f} / {mem['message']:.0f}",
            "",
            f"{'messages sent (by channel)':<44}{r['messages_sent']:>10} {r['messages_by_channel']}",
            f"{'held for quiet hours':<44}{st.get('deferred', 0):>10}",
            f"{'collapsed ETA updates':<44}{st.get('superseded', 0):>10}",
            f"{'failed for good (push token gone)':<44}{st.get('failed', 0):>10}",
            f"{'accepted by a provider (log) / sent (fakes)':<44}{_taken(st):>10} / {r['messages_sent']}"
            f"  (of which SMS delivered {st.get('delivered', 0)}, sent {st.get('sent', 0)})",
            f"{'sent twice':<44}{r['doubled']:>10}",
            f"{'dead / unknown':<44}{st.get('dead', 0):>10} / {st.get('unknown', 0)}",
            "",
            *webhook_lines(r["webhooks"], width=44),
        ]
    )


def _taken(statuses: dict[str, int]) -> int:
    """Messages a provider took: ``accepted``, and SMS that Twilio's callbacks then moved on."""
    return sum(statuses.get(s, 0) for s in ("accepted", "sent", "delivered", "undelivered"))


def run_peak_bench(args: argparse.Namespace) -> int:
    result = asyncio.run(_bench_peak(args))
    print()
    print(_report(result))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    st = result["statuses"]
    ok = result["doubled"] == 0 and _taken(st) == result["messages_sent"] and not st.get("unknown")
    ok = ok and webhooks_ok(result["webhooks"])
    return 0 if ok else 1

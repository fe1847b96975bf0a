"""``hub bench webhooks``: many customers texting back at once.

N customers each got an ``out_for_delivery`` SMS offering three new time slots (sent through
the stack first, as any run would). Then every one of them answers at once, as Twilio would post
it: a signed ``POST /webhooks/twilio/sms`` to `hub api`, 16 at a time. The replies are a mix: 40 %
pick a slot, 20 % give an instruction ("leave at the door", "neighbour at no. 12"), 20 % ask
for HELP, 10 % text STOP, 10 % write something the hub cannot read. Each gets its answer in the
TwiML of the response; each understood one also goes upstream as a signed webhook (the receiver
is a counting endpoint in a process of its own).

Figures, beside the ceiling measured in the same run with the same posters and the same form
bodies: a trivial aiohttp handler's requests/s. Inbound replies answered /s and their p50/p95/p99
round trip; upstream webhooks delivered /s and the delay from the reply to the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from hub.redis_server import EmbeddedRedis, free_port

from .common import BENCH_KEY, cpu_seconds, pct, post_all, spawn, start_stack, stop_all, wait_http

__all__ = ["run_webhooks_bench"]

HOOK_SECRET = "bench-webhook-secret-0123456789"
REPLIES = ("2", "2", "1", "3", "leave at the door", "neighbour at no. 12", "HELP", "help", "STOP", "when?? hello")
UNDERSTOOD = {"2", "1", "3", "leave at the door", "neighbour at no. 12", "STOP"}


def _seed_events(n: int, run: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    slots = [
        {
            "id": f"s{k}",
            "start": (now + timedelta(days=1, hours=k)).isoformat(),
            "end": (now + timedelta(days=1, hours=k + 2)).isoformat(),
        }
        for k in (1, 3, 5)
    ]
    eta = {"start": (now + timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=3)).isoformat()}
    return [
        {
            "event_id": f"wh{run}-{i}",
            "type": "out_for_delivery",
            "occurred_at": now.isoformat(),
            "delivery": {"id": f"WD-{run}-{i}", "tracking_code": f"LM{400000000 + i}", "merchant": "Acme", "eta": eta},
            "customer": {"id": f"WC-{run}-{i}", "name": "Ana Weber", "phone": f"+49153{10000000 + i}", "locale": "en"},
            "data": {"reschedule_slots": slots},
        }
        for i in range(n)
    ]


async def _bench_webhooks(args: argparse.Namespace) -> dict[str, Any]:
    from twilio.request_validator import RequestValidator

    from hub.config import ROOT, load_settings

    n, concurrency = args.events, args.concurrency
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-webhooks-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    receiver_port = free_port()
    receiver = spawn(["-m", "proofs.servers", "echo", str(receiver_port)])
    procs = [receiver]
    run = str(int(time.time()))
    try:
        await wait_http(f"http://127.0.0.1:{receiver_port}/hook")
        subscriptions = [{"url": f"http://127.0.0.1:{receiver_port}/hook", "secret": HOOK_SECRET}]
        stack = await start_stack(
            redis.url,
            args.workers,
            100,
            unpaced=True,
            HUB_WEBHOOKS__SUBSCRIPTIONS=json.dumps(subscriptions),
        )
        procs += stack.procs
        print(f"bench webhooks: {n} customers get an SMS with slots, then all answer", flush=True)
        seeds = _seed_events(n, run)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}
        await post_all(
            f"http://127.0.0.1:{stack.api_port}/v1/events",
            [json.dumps(e).encode() for e in seeds],
            concurrency,
            headers,
        )
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60 + n / 10
            while True:
                async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/count") as resp:
                    if sum((await resp.json()).values()) >= n:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the seed SMS did not all arrive")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # their message.status webhooks land

        settings = load_settings(ROOT / "config.yaml", environ={})
        validator = RequestValidator(settings.twilio.auth_token)
        url = f"http://127.0.0.1:{stack.api_port}/webhooks/twilio/sms"
        forms = [
            {
                "MessageSid": f"SMbench{run}{i:08d}",
                "AccountSid": "ACsandbox0000000000000000000000000",
                "From": seeds[i]["customer"]["phone"],
                "To": settings.twilio.from_number or "",
                "Body": REPLIES[i % len(REPLIES)],
                "NumMedia": "0",
            }
            for i in range(n)
        ]
        bodies = [urlencode(f).encode() for f in forms]
        signatures = [validator.compute_signature(url, f) for f in forms]

        # The ceiling: the same posters and bodies against a trivial handler.
        elapsed, _ = await post_all(
            f"http://127.0.0.1:{receiver_port}/",
            bodies,
            concurrency,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        ceiling = n / elapsed

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{receiver_port}/hook") as resp:
                before = len(await resp.json())
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in stack.procs}
            round_trips: list[float] = []
            answered = Counter[int]()
            sent_at: dict[int, float] = {}
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)

            async def poster() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    sent_at[i] = time.time()
                    t = time.perf_counter()
                    async with http.post(
                        url,
                        data=bodies[i],
                        headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "X-Twilio-Signature": signatures[i],
                        },
                    ) as resp:
                        await resp.read()
                        answered[resp.status] += 1
                    round_trips.append(time.perf_counter() - t)

            start = time.perf_counter()
            await asyncio.gather(*(poster() for _ in range(concurrency)))
            inbound_s = time.perf_counter() - start
            expected_hooks = sum(1 for f in forms if f["Body"] in UNDERSTOOD)
            deadline = time.monotonic() + 60 + n / 10
            seen, quiet_since = -1, time.monotonic()
            while time.monotonic() < deadline:  # until nothing new has come for 2 s
                async with http.get(f"http://127.0.0.1:{receiver_port}/hook") as resp:
                    hooks = (await resp.json())[before:]
                upstream = [h for h in hooks if h[1] != "message.status"]
                if len(upstream) != seen:
                    seen, quiet_since = len(upstream), time.monotonic()
                elif time.monotonic() - quiet_since > 2.0:
                    break
                await asyncio.sleep(0.1)
        cpu = {p.pid: cpu_seconds(p.pid) - cpu_before[p.pid] for p in stack.procs}
        first_post = min(sent_at.values())
        last_hook = max((h[0] for h in upstream), default=first_post)
        ms = 1000.0
        return {
            "replies": n,
            "workers": args.workers,
            "concurrency": concurrency,
            "http_ceiling_per_s": ceiling,
            "replies_answered_per_s": n / inbound_s,
            "answers_by_status": dict(answered),
            "round_trip_ms": {p: pct(round_trips, q) * ms for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "upstream_webhooks": len(upstream),
            "upstream_expected": expected_hooks,  # at least: one per understood reply
            "upstream_by_type": dict(Counter(h[1] for h in upstream)),
            "upstream_webhooks_per_s": len(upstream) / max(1e-9, last_hook - first_post),
            "cpu_s_per_1000_replies": {
                "api": cpu[stack.api.pid] / n * 1000,
                "workers": sum(cpu[p.pid] for p in stack.workers) / n * 1000,
            },
        }
    finally:
        stop_all(procs)
        redis.stop()


def run_webhooks_bench(args: argparse.Namespace) -> int:
    r = asyncio.run(_bench_webhooks(args))
    rt = r["round_trip_ms"]
    print()
    print(f"{r['replies']} inbound replies, {r['concurrency']} at a time; {r['workers']} worker process(es)\n")
    print(f"{'figure':<40}{'value':>10}  {'ceiling (same run)':>22}  {'ratio':>6}")
    print(
        f"{'replies answered /s (signed, TwiML)':<40}{r['replies_answered_per_s']:>10.0f}  "
        f"{r['http_ceiling_per_s']:>14.0f} http req/s  {r['replies_answered_per_s'] / r['http_ceiling_per_s']:>6.2f}"
    )
    print(f"{'reply round trip p50 / p95 / p99':<40}{rt['p50']:>8.1f}ms / {rt['p95']:.1f}ms / {rt['p99']:.1f}ms")
    print(f"{'upstream webhooks delivered /s':<40}{r['upstream_webhooks_per_s']:>10.0f}")
    print(
        f"{'upstream webhooks (at least)':<40}{r['upstream_webhooks']:>10} ({r['upstream_expected']})"
        f" {r['upstream_by_type']}"
    )
    cpu = r["cpu_s_per_1000_replies"]
    print(f"{'CPU s / 1,000 replies: api / workers':<40}{cpu['api']:>6.2f} / {cpu['workers']:.2f}")
    print(f"{'answers by HTTP status':<40}{r['answers_by_status']}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(r, indent=2))
    ok = r["answers_by_status"] == {200: r["replies"]} and r["upstream_webhooks"] >= r["upstream_expected"]
    return 0 if ok else 1

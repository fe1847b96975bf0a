"""``hub bench hosts``: worker processes under different host names sharing one Redis, 1 to
``--workers`` hosts, one burst each.

Each worker runs in a UTS namespace of its own (``unshare --uts --map-root-user``) under the host
name ``hub-host-<n>``, so ``socket.gethostname()`` and with it the worker's name in the heartbeat
(``<host>:<pid>:…``) are those of a host of its own, as on a fleet; the network, the Redis and
everything else are shared, as on one. Per host count the run reports the hosts the heartbeats
name, the messages each host sent (from the worker's INFO line ``message <channel> accepted``,
which carries the message id), its CPU, events fully sent per second, and that nothing was sent
twice: by the providers' ledger, and no message id sent from two hosts.

Linux only, and only where unprivileged user namespaces are allowed (or as root): the run says
so and exits 2 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
from redis.asyncio import Redis

from hub import keys
from hub.redis_server import EmbeddedRedis

from .common import BENCH_KEY, ROOT, burst_events, cpu_seconds, post_all, start_stack, stop_all
from .webhook_check import settle_webhooks

__all__ = ["can_rename_hosts", "measure_hosts", "run_hosts_bench"]

_UNSHARE = ["unshare", "--uts", "--map-root-user"]
_SENT = re.compile(r"^message (\w+) accepted\b")


def can_rename_hosts() -> bool:
    """Whether this machine lets a process take a host name of its own."""
    try:
        done = subprocess.run([*_UNSHARE, "hostname", "hub-probe"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _host_worker(env: dict[str, str], host: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``hub worker`` under host name ``host``, logging JSON lines to ``log``."""
    script = 'hostname "$0" && exec "$@"'
    args = [*_UNSHARE, "sh", "-c", script, host, sys.executable, "-m", "hub", "worker"]
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


def _sent_by_host(logs: dict[str, Path]) -> tuple[Counter[str], int]:
    """Messages each host logged as accepted by the provider, and how many message ids more than
    one host logged."""
    per_host: Counter[str] = Counter()
    hosts_of: dict[str, set[str]] = {}
    for host, path in logs.items():
        for raw in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and _SENT.match(str(entry.get("message", ""))) and entry.get("message_id"):
                per_host[host] += 1
                hosts_of.setdefault(entry["message_id"], set()).add(host)
    return per_host, sum(1 for hosts in hosts_of.values() if len(hosts) > 1)


async def _heartbeat_hosts(url: str, want: int, timeout: float = 30.0) -> set[str]:
    """The host names in the event workers' heartbeats, once ``want`` of them are there."""
    r = Redis.from_url(url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            names = await r.zrange(keys.WORKER_HEARTBEAT, 0, -1)
            hosts = {n.split(":", 1)[0] for n in names if not n.startswith("webhooks:")}
            if len(hosts) >= want or time.monotonic() > deadline:
                return hosts
            await asyncio.sleep(0.1)
    finally:
        await r.aclose()


async def _ledger(sandbox_port: int, expected: int, timeout: float) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while True:
            async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/count") as resp:
                if sum((await resp.json()).values()) >= expected:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {expected} messages arrived")
            await asyncio.sleep(0.05)
        async with http.get(f"http://127.0.0.1:{sandbox_port}/bench/dump") as resp:
            ledger: list[dict[str, Any]] = await resp.json()
            return ledger


async def measure_hosts(hosts: int, n: int, concurrency: int, tmp: Path) -> dict[str, Any]:
    """One burst of ``n`` events with one worker process on each of ``hosts`` host names."""
    redis = EmbeddedRedis(tmp / f"redis-{hosts}", appendonly=True).start()
    procs: list[subprocess.Popen[bytes]] = []
    logs = {f"hub-host-{i + 1}": tmp / f"worker-{hosts}-{i + 1}.log" for i in range(hosts)}
    try:
        stack = await start_stack(
            redis.url,
            0,
            100,
            status_callbacks=True,
            subscriber=True,
            unpaced=True,
        )
        procs += stack.procs
        env = {**stack.env, "HUB_LOG_LEVEL": "INFO", "HUB_LOG_FORMAT": "json"}
        workers = {}
        for host, path in logs.items():
            with path.open("wb") as log:
                workers[host] = _host_worker(env, host, log)
        procs += workers.values()
        seen = await _heartbeat_hosts(redis.url, hosts)
        events = burst_events(n, f"-h{hosts}-{int(time.time())}")
        expected = sum(3 if e["type"] == "out_for_delivery" else 2 for e in events)
        cpu_before = {h: cpu_seconds(p.pid) for h, p in workers.items()}
        start_wall = time.time()
        await post_all(
            f"http://127.0.0.1:{stack.api_port}/v1/events",
            [json.dumps(e).encode() for e in events],
            concurrency,
            {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
        )
        ledger = await _ledger(stack.sandbox_port, expected, max(120.0, n / 10))
        last = max(datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp() for m in ledger)
        cpu = {h: cpu_seconds(p.pid) - cpu_before[h] for h, p in workers.items()}
        settled = await settle_webhooks(redis.url, stack.receiver_url)
    finally:
        stop_all(procs)
        redis.stop()
    per_host, shared_ids = _sent_by_host(logs)
    return {
        "hosts": hosts,
        "events": n,
        "expected_messages": expected,
        "messages": len(ledger),
        "duplicates": len(ledger) - len({(m["channel"], m["to"]) for m in ledger}),
        "sent_from_two_hosts": shared_ids,
        "heartbeat_hosts": sorted(seen),
        "messages_by_host": {h: per_host.get(h, 0) for h in logs},
        "worker_cpu_s_by_host": cpu,
        "sent_events_per_s": n / max(last - start_wall, 1e-9),
        "webhooks_settled": settled,
    }


def _problems(r: dict[str, Any]) -> list[str]:
    """What is wrong with one run's figures (nothing, when the hosts shared the work correctly)."""
    checks = {
        "messages missing at the providers": r["messages"] != r["expected_messages"],
        "messages sent twice": r["duplicates"] != 0,
        "message ids sent from two hosts": r["sent_from_two_hosts"] != 0,
        "messages not logged by any host": sum(r["messages_by_host"].values()) != r["expected_messages"],
        "hosts missing from the heartbeats": len(r["heartbeat_hosts"]) != r["hosts"],
        "webhooks not settled": not r["webhooks_settled"],
    }
    return [f"{r['hosts']} host(s): {what}" for what, wrong in checks.items() if wrong]


def run_hosts_bench(args: argparse.Namespace) -> int:
    if not can_rename_hosts():
        print("hub bench hosts: this machine gives no process a host name of its own (unshare --uts)", flush=True)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-hosts-"))
    results = []
    try:
        for hosts in range(1, max(1, args.workers) + 1):
            print(f"bench: {args.events} events, {hosts} worker host(s) sharing one Redis", flush=True)
            results.append(asyncio.run(measure_hosts(hosts, args.events, args.concurrency, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the workers' logs and the Redis data
    print(f"\nmachine: {os.cpu_count()} CPUs shared by every host; one worker process per host")
    print(f"{'hosts':>5}  {'sent ev/s':>9}  {'sent/doubled/two hosts':>22}  messages by host (worker CPU s)")
    for r in results:
        by_host = ", ".join(f"{h} {c} ({r['worker_cpu_s_by_host'][h]:.1f})" for h, c in r["messages_by_host"].items())
        checks = f"{r['messages']}/{r['duplicates']}/{r['sent_from_two_hosts']}"
        print(f"{r['hosts']:>5}  {r['sent_events_per_s']:>9.0f}  {checks:>22}  {by_host}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=2))
    problems = [p for r in results for p in _problems(r)]
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0

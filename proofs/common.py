"""What every benchmark and chaos run shares: a hub of real processes and the measuring tools.

``start_stack`` starts the sandbox providers, ``hub api`` and ``hub worker`` processes (and a
webhook receiver) against a Redis the run owns; ``Stack`` holds them. The rest measures: Redis
round trips, posting events at a pace, the arq no-op ceiling, CPU seconds of a process,
percentiles and Redis memory. Helper processes run ``python -m proofs.servers``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from hub.redis_server import free_port

__all__ = [
    "BENCH_ADMIN_KEY",
    "BENCH_KEY",
    "HOOK_SECRET",
    "NOOP_QUEUE",
    "ROOT",
    "Stack",
    "arq_noop_ceiling",
    "burst_events",
    "calls_per_second",
    "count_statuses",
    "cpu_seconds",
    "hub_env",
    "memory_breakdown",
    "pct",
    "post_all",
    "redis_info",
    "redis_round_trips",
    "spawn",
    "start_stack",
    "stop_all",
    "wait_http",
]

# The source checkout the proofs run from: its config.yaml, and the working directory of the
# processes they start (``python -m hub`` and ``python -m proofs.servers`` resolve from it).
ROOT = Path(__file__).resolve().parent.parent
BENCH_KEY = "bench-key"
BENCH_ADMIN_KEY = "bench-admin-key"
NOOP_QUEUE = "bench:noop"
HOOK_SECRET = "bench-subscriber-secret-0123456789"  # the stack's webhook subscription
# The pipeline's own speed, whatever the hour of the run: nothing held for quiet hours, no sender
# pacing (`hub bench mix` and `peak` measure the policy at work).
UNPACED = {"HUB_POLICY__QUIET_HOURS": "", "HUB_POLICY__SENDER_RATE": "{sms: 0, email: 0, push: 0}"}
# Short leases and retries so a chaos run recovers in seconds; production keeps the defaults.
QUICK_RECOVERY = {
    "HUB_WORKER__JOB_TIMEOUT": "6",
    "HUB_WORKER__RETRY_BASE_DELAY": "0.2",
    "HUB_WEBHOOKS__RETRY_BASE_DELAY": "0.2",
    "HUB_WEBHOOKS__RETRY_MAX_DELAY": "2",
}


# -- measurement helpers ---------------------------------------------------------------------
def spawn(args: list[str], env: dict[str, str] | None = None, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """A helper process; ``quiet`` silences its stderr too (the provider fakes log every
    connection a killed client leaves behind)."""
    stderr = subprocess.DEVNULL if quiet else None
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def hub_env(redis_url: str, api_port: int, **extra: str) -> dict[str, str]:
    """The environment of the `hub api` / `hub worker` processes a benchmark starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "HUB_CONFIG": str(ROOT / "config.yaml"),
            "HUB_REDIS_URL": redis_url,
            "HUB_API_KEY": BENCH_KEY,
            "HUB_ADMIN_API_KEY": BENCH_ADMIN_KEY,
            "HUB_SECRET_KEY": "bench-secret",
            "HUB_LOG_LEVEL": "WARNING",
            "HUB_API__PORT": str(api_port),
            "HUB_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
            **extra,
        }
    )
    return env


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


async def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def redis_round_trips(url: str, seconds: float = 1.5) -> float:
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await r.ping()
        n += 1
    await r.aclose()
    return n / (time.perf_counter() - start)


async def post_all(
    url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str], rate: float = 0.0
) -> tuple[float, dict[int, float]]:
    """POST every body (paced at ``rate`` per second when given); returns elapsed seconds and
    the wall-clock send time per index."""
    sent_at: dict[int, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    failures = Counter[int]()

    begin = time.perf_counter()

    async def poster(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if rate:
                await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            sent_at[i] = time.time()
            async with http.post(url, data=bodies[i], headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    failures[resp.status] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        await asyncio.gather(*(poster(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"posts failed: {dict(failures)}")
    return elapsed, sent_at


async def arq_noop_ceiling(redis_url: str, n: int, workers: int, max_jobs: int, concurrency: int) -> float:
    from arq.connections import RedisSettings, create_pool

    procs = [spawn(["-m", "proofs.servers", "noop-worker", redis_url, str(max_jobs)]) for _ in range(workers)]
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=NOOP_QUEUE)
    try:
        await asyncio.sleep(1.0)  # workers connect
        start = time.perf_counter()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def enqueuer() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await pool.enqueue_job("_noop", _job_id=f"noop-{i}")

        await asyncio.gather(*(enqueuer() for _ in range(concurrency)))
        while await pool.zcard(NOOP_QUEUE) > 0:
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - start)
    finally:
        await pool.aclose()
        stop_all(procs)


def burst_events(n: int, run: str) -> list[dict[str, Any]]:
    out = []
    now = datetime.now(UTC)
    occurred = now.isoformat(timespec="seconds")
    eta = {
        "start": (now + timedelta(hours=1)).isoformat(timespec="seconds"),
        "end": (now + timedelta(hours=3)).isoformat(timespec="seconds"),
    }
    for i in range(n):
        kind = "out_for_delivery" if i % 2 == 0 else "arriving_soon"
        out.append(
            {
                "event_id": f"bench{run}-{i}",
                "type": kind,
                "occurred_at": occurred,
                "delivery": {
                    "id": f"BD-{i}",
                    "tracking_code": f"LM{100000000 + i}",
                    "merchant": "Acme Shoes",
                    "eta": eta,
                },
                "customer": {
                    "id": f"BC-{i}",
                    "name": "Ana Weber",
                    "phone": f"+49151{10000000 + i}",
                    "email": f"c{i}@example.com",
                    "push_tokens": [f"bench-token-{i}"],
                    "locale": ("de-DE", "en", "es", "fr")[i % 4],
                    "timezone": "Europe/Berlin",
                },
                "driver": {"id": "DR-5", "name": "Sam"},
                "data": {"minutes": 10} if kind == "arriving_soon" else {},
            }
        )
    return out


async def calls_per_second(n: int, one: Callable[[int], Awaitable[None]], clients: int) -> float:
    """Calls per second: ``n`` calls of ``one`` (given their index), ``clients`` at a time."""
    gate = asyncio.Semaphore(clients)

    async def gated(i: int) -> None:
        async with gate:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(gated(i) for i in range(n)))
    return n / (time.perf_counter() - start)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Stack:
    """The processes of a benchmarked hub: sandbox providers, `hub api`, `hub worker`s, and the
    webhook subscriber's receiver when there is one."""

    sandbox: subprocess.Popen[bytes]
    api: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    sandbox_port: int
    api_port: int
    env: dict[str, str]
    receiver: subprocess.Popen[bytes] | None = None
    receiver_port: int = 0

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [self.sandbox, self.api, *self.workers, *([self.receiver] if self.receiver else [])]

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        """One more `hub worker` with the stack's environment (e.g. in place of a killed one)."""
        worker = spawn(["-m", "hub", "worker"], self.env)
        self.workers.append(worker)
        return worker

    async def restart_api(self) -> None:
        """A new `hub api` on the same port (after the old one was killed); waits until it answers."""
        self.api = spawn(["-m", "hub", "api"], self.env)
        await wait_http(f"http://127.0.0.1:{self.api_port}/healthz")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}/sandbox"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"


async def start_stack(
    redis_url: str,
    workers: int,
    max_jobs: int,
    *,
    fault_timeout: float = 30.0,
    status_callbacks: bool = False,
    subscriber: bool = False,
    unpaced: bool = False,
    **env: str,
) -> Stack:
    """Start the sandbox, `hub api` and ``workers`` `hub worker` processes; wait until they answer.
    ``fault_timeout``: how long the sandbox holds a request under a "timeout" fault.
    ``status_callbacks``: the Twilio fake reports ``sent`` and ``delivered`` for every SMS it takes,
    as Twilio does; ``subscriber``: a receiver (``Stack.receiver_url``) subscribed to every webhook
    type, as an upstream system is in production; ``unpaced``: the pipeline's own speed
    (``UNPACED``)."""
    if unpaced:
        env = {**UNPACED, **env}
    sandbox_port, smtp_port, api_port = free_port(), free_port(), free_port()
    ports = [str(sandbox_port), str(smtp_port)]
    sandbox = spawn(
        ["-m", "proofs.servers", "sandbox", *ports, str(fault_timeout), str(int(status_callbacks))], quiet=True
    )
    receiver, receiver_port = None, 0
    if subscriber:
        receiver_port = free_port()
        receiver = spawn(["-m", "proofs.servers", "echo", str(receiver_port), HOOK_SECRET])
        hook = {"url": f"http://127.0.0.1:{receiver_port}/hook", "secret": HOOK_SECRET}  # no "events": every type
        env = {"HUB_WEBHOOKS__SUBSCRIPTIONS": json.dumps([hook]), **env}
    origin = f"http://127.0.0.1:{sandbox_port}/sandbox"
    env_of_hub = hub_env(
        redis_url,
        api_port,
        HUB_TWILIO__BASE_URL=f"{origin}/twilio",
        HUB_FCM__BASE_URL=f"{origin}/fcm",
        HUB_SMTP__PORT=str(smtp_port),
        HUB_WORKER__MAX_JOBS=str(max_jobs),
        **env,
    )
    stack = Stack(
        sandbox,
        spawn(["-m", "hub", "api"], env_of_hub),
        [spawn(["-m", "hub", "worker"], env_of_hub) for _ in range(workers)],
        sandbox_port,
        api_port,
        env_of_hub,
        receiver,
        receiver_port,
    )
    try:
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        await wait_http(f"http://127.0.0.1:{sandbox_port}/bench/count")
        if receiver:
            await wait_http(f"{stack.receiver_url}/hook/count")
        if redis_url:  # a stack given only sentinels waits on its own conditions
            await wait_workers(redis_url, workers)
    except BaseException:
        stop_all(stack.procs)
        raise
    return stack


async def redis_info(url: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    try:
        info: dict[str, Any] = await r.info("memory")
        return info
    finally:
        await r.aclose()


async def memory_breakdown(url: str, sample: int = 200) -> dict[str, float]:
    """Average bytes Redis holds (``MEMORY USAGE``) per customer, delivery, logged message and
    accepted event, each with the keys that belong to it (see hub.keys), from a sample of each."""
    from redis.asyncio import Redis

    r = Redis.from_url(url, decode_responses=True)

    async def usage(*names: str) -> int:
        total = 0
        for name in names:
            total += int(await r.memory_usage(name, samples=0) or 0)
        return total

    async def average(pattern: str, related: Any) -> float:
        sizes = []
        async for key in r.scan_iter(pattern, count=1000):
            if key.count(":") != pattern.count(":"):
                continue  # hub:msg:{id}:history under hub:msg:*
            sizes.append(await usage(key, *(await related(key))))
            if len(sizes) >= sample:
                break
        return statistics.fmean(sizes) if sizes else 0.0

    async def of_customer(key: str) -> list[str]:
        cid = key.split(":", 2)[2]
        windows = [k async for k in r.scan_iter(f"hub:rl:{cid}:*")]
        return [f"hub:links:customer:{cid}", f"hub:msgs:customer:{cid}", *windows]

    async def of_delivery(key: str) -> list[str]:
        did = key.split(":", 2)[2]
        return [f"hub:timeline:{did}", f"hub:msgs:delivery:{did}"]

    async def of_message(key: str) -> list[str]:
        provider_id = await r.hget(key, "provider_id")
        return [f"{key}:history", *([f"hub:provider:{provider_id}"] if provider_id else [])]

    async def nothing(key: str) -> list[str]:
        return []

    try:
        return {
            "customer": await average("hub:customer:*", of_customer),
            "delivery": await average("hub:delivery:*", of_delivery),
            "message": await average("hub:msg:*", of_message),
            "event": await average("hub:event:*:*", nothing),
        }
    finally:
        await r.aclose()


async def count_statuses(redis_url: str) -> Counter[str]:
    """How many logged messages are in each status."""
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        counts: Counter[str] = Counter()
        async for key in r.scan_iter("hub:msg:*", count=1000):
            if key.count(":") == 2:
                counts[await r.hget(key, "status") or "?"] += 1
        return counts
    finally:
        await r.aclose()


async def wait_workers(redis_url: str, workers: int, timeout: float = 60.0) -> None:
    """Wait until ``workers`` `hub worker` processes are taking jobs (each beats for its event
    worker and its webhook worker once it has started: templates compiled, clients made), so
    what a run measures is the work, not the start-up."""
    from redis.asyncio import Redis

    from hub import keys

    r = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while await r.zcard(keys.WORKER_HEARTBEAT) < 2 * workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} worker process(es) did not start within {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await r.aclose()

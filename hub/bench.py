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

Internal subcommands (``python -m hub.bench sandbox|noop-worker|echo``) run the helper processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .config import ROOT
from .redis_server import EmbeddedRedis, free_port
from .signing import verify

__all__ = ["run_bench", "settle_webhooks", "start_stack", "webhook_figures"]

BENCH_KEY = "bench-key"
BENCH_ADMIN_KEY = "bench-admin-key"
NOOP_QUEUE = "bench:noop"
HOOK_SECRET = "bench-subscriber-secret-0123456789"  # the stack's webhook subscription


# -- helper processes ------------------------------------------------------------------------
async def _serve_sandbox(port: int, smtp_port: int, fault_timeout: float = 30.0, callbacks: bool = False) -> None:
    from .sandbox import Sandbox

    sandbox = Sandbox(status_callbacks=callbacks, fault_timeout=fault_timeout)
    app = web.Application(client_max_size=1 << 24)
    sandbox.add_routes(app, "/sandbox")

    async def count(request: web.Request) -> web.Response:
        return web.json_response(Counter(e.channel for e in sandbox.ledger))

    async def dump(request: web.Request) -> web.Response:
        # digest: what the message said, so two different messages to one address are told apart.
        return web.json_response(
            [
                {
                    "channel": e.channel,
                    "to": e.to,
                    "received_at": e.to_dict()["received_at"],
                    "digest": hashlib.sha1(f"{e.subject}|{e.text}|{e.push_body}".encode()).hexdigest()[:16],
                }
                for e in sandbox.ledger
            ]
        )

    app.router.add_get("/bench/count", count)
    app.router.add_get("/bench/dump", dump)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await sandbox.start_smtp("127.0.0.1", smtp_port)
    await _wait_for_signal()
    await sandbox.close()
    await runner.cleanup()


async def _serve_echo(port: int, secret: str = "") -> None:
    """The HTTP ceiling's trivial handler, and a webhook receiver that notes what arrives when.

    With ``secret`` the receiver checks ``Hub-Signature`` as a subscriber must and answers 400
    to a bad one (the hub then retries it). ``GET /hook`` lists (time, type) of each webhook
    taken; ``GET /hook/log`` each one's id, type, message id and status, and the signatures
    refused; ``GET /hook/count`` the two counts."""
    received: list[tuple[float, str]] = []
    log: list[dict[str, Any]] = []
    refused = [0]

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        if secret and not verify(secret, request.headers.get("Hub-Signature", ""), raw):
            refused[0] += 1
            return web.Response(status=400)
        body = json.loads(raw)
        data = body.get("data") or {}
        received.append((time.time(), str(body.get("type", "?"))))
        log.append(
            {
                "id": body.get("id"),
                "type": body.get("type"),
                "message_id": data.get("message_id"),
                "status": data.get("status"),
            }
        )
        return web.Response(status=204)

    async def hooks(request: web.Request) -> web.Response:
        return web.json_response(received)

    async def hook_log(request: web.Request) -> web.Response:
        return web.json_response({"received": log, "refused": refused[0]})

    async def hook_count(request: web.Request) -> web.Response:
        return web.json_response({"received": len(log), "refused": refused[0]})

    app = web.Application()
    app.router.add_post("/", ok)
    app.router.add_post("/hook", hook)
    app.router.add_get("/hook", hooks)
    app.router.add_get("/hook/log", hook_log)
    app.router.add_get("/hook/count", hook_count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _wait_for_signal()
    await runner.cleanup()


async def _noop(ctx: dict[str, Any]) -> None:
    return None


def _noop_worker(redis_url: str, max_jobs: int) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker

    Worker(
        functions=[_noop],
        queue_name=NOOP_QUEUE,
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=max_jobs,
        poll_delay=0.05,
        keep_result=60,
        log_results=False,
    ).run()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- measurement helpers ---------------------------------------------------------------------
def _spawn(args: list[str], env: dict[str, str] | None = None, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """A helper process; ``quiet`` silences its stderr too (the provider fakes log every
    connection a killed client leaves behind)."""
    stderr = subprocess.DEVNULL if quiet else None
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def _hub_env(redis_url: str, api_port: int, **extra: str) -> dict[str, str]:
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


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


async def _wait_http(url: str, timeout: float = 20) -> None:
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


async def _redis_round_trips(url: str, seconds: float = 1.5) -> float:
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await r.ping()
        n += 1
    await r.aclose()
    return n / (time.perf_counter() - start)


async def _post_all(
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


async def _arq_noop_ceiling(redis_url: str, n: int, workers: int, max_jobs: int, concurrency: int) -> float:
    from arq.connections import RedisSettings, create_pool

    procs = [_spawn(["-m", "hub.bench", "noop-worker", redis_url, str(max_jobs)]) for _ in range(workers)]
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
        _stop_all(procs)


def _events(n: int, run: str) -> list[dict[str, Any]]:
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


def _pct(values: list[float], p: float) -> float:
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
        worker = _spawn(["-m", "hub", "worker"], self.env)
        self.workers.append(worker)
        return worker

    async def restart_api(self) -> None:
        """A new `hub api` on the same port (after the old one was killed); waits until it answers."""
        self.api = _spawn(["-m", "hub", "api"], self.env)
        await _wait_http(f"http://127.0.0.1:{self.api_port}/healthz")

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
    **env: str,
) -> Stack:
    """Start the sandbox, `hub api` and ``workers`` `hub worker` processes; wait until they answer.
    ``fault_timeout``: how long the sandbox holds a request under a "timeout" fault.
    ``status_callbacks``: the Twilio fake reports ``sent`` and ``delivered`` for every SMS it takes,
    as Twilio does; ``subscriber``: a receiver (``Stack.receiver_url``) subscribed to every webhook
    type, as an upstream system is in production."""
    sandbox_port, smtp_port, api_port = free_port(), free_port(), free_port()
    ports = [str(sandbox_port), str(smtp_port)]
    sandbox = _spawn(["-m", "hub.bench", "sandbox", *ports, str(fault_timeout), str(int(status_callbacks))], quiet=True)
    receiver, receiver_port = None, 0
    if subscriber:
        receiver_port = free_port()
        receiver = _spawn(["-m", "hub.bench", "echo", str(receiver_port), HOOK_SECRET])
        hook = {"url": f"http://127.0.0.1:{receiver_port}/hook", "secret": HOOK_SECRET}  # no "events": every type
        env = {"HUB_WEBHOOKS__SUBSCRIPTIONS": json.dumps([hook]), **env}
    origin = f"http://127.0.0.1:{sandbox_port}/sandbox"
    hub_env = _hub_env(
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
        _spawn(["-m", "hub", "api"], hub_env),
        [_spawn(["-m", "hub", "worker"], hub_env) for _ in range(workers)],
        sandbox_port,
        api_port,
        hub_env,
        receiver,
        receiver_port,
    )
    try:
        await _wait_http(f"http://127.0.0.1:{api_port}/healthz")
        await _wait_http(f"http://127.0.0.1:{sandbox_port}/bench/count")
        if receiver:
            await _wait_http(f"{stack.receiver_url}/hook/count")
    except BaseException:
        _stop_all(stack.procs)
        raise
    return stack


# -- webhooks and status callbacks -----------------------------------------------------------
# Statuses a message passes through that are told upstream as a `message.status` webhook
# (docs/webhooks.md): the worker's outcomes, and Twilio's reports applied from its callbacks.
TOLD_STATUSES = frozenset({"accepted", "failed", "dead", "expired", "unknown"})
CALLBACK_STATUSES = frozenset({"sent", "delivered", "undelivered"})
TAKEN = frozenset({"accepted"} | CALLBACK_STATUSES)  # the provider took the message


async def _message_log(redis: Any) -> list[tuple[str, str, str, list[str]]]:
    """(message id, channel, status, the statuses of its history) of every logged message."""
    ids = [k async for k in redis.scan_iter("hub:msg:*", count=1000) if k.count(":") == 2]
    async with redis.pipeline(transaction=False) as pipe:
        for key in ids:
            pipe.hmget(key, ["id", "channel", "status"])
            pipe.lrange(f"{key}:history", 0, -1)
        found = await pipe.execute()
    out = []
    for (message_id, channel, status), history in zip(found[::2], found[1::2], strict=True):
        if message_id:
            steps = [str(json.loads(h).get("status", "")) for h in history]
            out.append((message_id, channel or "", status or "", steps))
    return out


async def _delivery_records(redis: Any) -> dict[str, str]:
    """Webhook delivery id -> its status (pending, retrying, delivered, dead), every one the hub made."""
    ids = await redis.zrange("hub:wh:index", 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hget(f"hub:wh:{delivery_id}", "status")
        statuses = await pipe.execute()
    return {i: s or "gone" for i, s in zip(ids, statuses, strict=True)}


async def settle_webhooks(redis_url: str, receiver_url: str, *, quiet: float = 2.0, timeout: float = 90.0) -> bool:
    """Wait until every webhook delivery the hub made is delivered (or dead) and nothing new (a
    delivery, a webhook at the receiver: a late status callback makes both) has come for ``quiet``
    seconds. False when ``timeout`` ran out first."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    redis = Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    since = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    records = await _delivery_records(redis)
                    async with http.get(f"{receiver_url}/hook/count") as resp:
                        received = int((await resp.json())["received"])
                except (RedisError, OSError, aiohttp.ClientError):
                    records, received = {"?": "unreachable"}, -1
                now = (len(records), received)
                open_ = any(s not in ("delivered", "dead") for s in records.values())
                if now != last or open_:
                    last, since = now, time.monotonic()
                elif time.monotonic() - since >= quiet:
                    return True
                await asyncio.sleep(0.25)
        return False
    finally:
        await redis.aclose()


async def webhook_figures(redis_url: str, receiver_url: str, sms_taken: int) -> dict[str, Any]:
    """What the subscriber received, checked against the hub's own records; ``sms_taken``: SMS the
    Twilio fake took (each gets two status callbacks, ``sent`` and ``delivered``).

    Webhooks are at least once (docs/webhooks.md): a receiver de-duplicates on ``id``. So the
    check is that no id is missing, not that none came twice: every delivery the hub recorded
    reached the receiver (``missing_ids``), and every status a logged message passed through
    that is told upstream (accepted, failed, dead, expired, unknown, and the sent / delivered /
    undelivered of an applied Twilio callback) reached it as a ``message.status`` for that
    message (``status_missing``). ``repeated``: webhooks received again under an id already
    received (allowed); ``refused``: bad signatures."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        log = await _message_log(redis)
        records = await _delivery_records(redis)
    finally:
        await redis.aclose()
    async with aiohttp.ClientSession() as http, http.get(f"{receiver_url}/hook/log") as resp:
        taken = await resp.json()
    received: list[dict[str, Any]] = taken["received"]
    unique = {h["id"]: h for h in received}
    told = {(h["message_id"], h["status"]) for h in unique.values() if h["type"] == "message.status"}
    expected: set[tuple[str, str]] = set()
    applied: Counter[str] = Counter()
    overtaken = 0
    for message_id, _, status, steps in log:
        # The fake posts `delivered` only once `sent` was answered: a `delivered` without `sent`
        # in the history is a `sent` the hub applied too late (a status only moves forward).
        overtaken += "sent" not in steps and bool({"delivered", "undelivered"} & set(steps))
        if status in TAKEN:
            expected.add((message_id, "accepted"))
        elif status in TOLD_STATUSES:
            expected.add((message_id, status))
        for step in steps:
            if step in TOLD_STATUSES or step in CALLBACK_STATUSES:
                expected.add((message_id, step))
            if step in CALLBACK_STATUSES:
                applied[step] += 1
    missing = sorted(expected - told)
    return {
        "received": len(received),
        "unique": len(unique),
        "repeated": len(received) - len(unique),
        "by_type": dict(Counter(h["type"] for h in unique.values())),
        "message_status": dict(Counter(h["status"] for h in unique.values() if h["type"] == "message.status")),
        "refused": int(taken["refused"]),
        "recorded": len(records),
        "not_delivered": dict(Counter(s for s in records.values() if s != "delivered")),
        "missing_ids": sum(1 for i in records if i not in unique),
        "status_expected": len(expected),
        "status_missing": len(missing),
        "status_missing_sample": [f"{m} {s}" for m, s in missing[:10]],
        "callbacks_applied": dict(applied),
        "callbacks_overtaken": overtaken,
        "callbacks_expected": 2 * sms_taken,
        "callbacks_not_applied": 2 * sms_taken - sum(applied.values()) - overtaken,
    }


def webhooks_ok(figures: dict[str, Any]) -> bool:
    """Every webhook the hub made, and every message status it should tell, reached the subscriber."""
    return not (figures["missing_ids"] or figures["status_missing"] or figures["refused"])


def webhook_lines(figures: dict[str, Any], indent: str = "", width: int = 34, colon: str = "") -> list[str]:
    """The webhook and callback figures as report lines (``colon`` after each label, if given)."""
    f = figures
    applied = f["callbacks_applied"]
    rows = [
        ("webhooks received", f"{f['received']} ({f['unique']} distinct ids; {f['repeated']} again, allowed)"),
        ("  by type", str(f["by_type"])),
        ("  message.status by status", str(f["message_status"])),
        (
            "  made by hub / not received",
            f"{f['recorded']} / {f['missing_ids']}"
            + (f" (not delivered: {f['not_delivered']})" if f["not_delivered"] else ""),
        ),
        (
            "  statuses to tell / not told",
            f"{f['status_expected']} / {f['status_missing']}"
            + (f", e.g. {', '.join(f['status_missing_sample'][:3])}" if f["status_missing"] else ""),
        ),
        ("  bad signatures", str(f["refused"])),
        (
            "status callbacks applied",
            f"{sum(applied.values())} of {f['callbacks_expected']} (2 per SMS Twilio took): "
            f"sent {applied.get('sent', 0)}, delivered {applied.get('delivered', 0)}",
        ),
        ("  sent overtaken by delivered", f"{f['callbacks_overtaken']} (not applied: a status only moves forward)"),
        ("  not applied otherwise", str(f["callbacks_not_applied"])),
    ]
    return [f"{indent}{label + colon:<{width}}{value}" for label, value in rows]


# -- the run ---------------------------------------------------------------------------------
async def _bench(args: argparse.Namespace) -> dict[str, Any]:
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
        result["redis_round_trips_per_s"] = await _redis_round_trips(redis.url)

        echo_port = free_port()
        echo = _spawn(["-m", "hub.bench", "echo", str(echo_port)])
        try:
            await _wait_http(f"http://127.0.0.1:{echo_port}/")
            body = json.dumps(_events(1, "x")[0]).encode()
            elapsed, _ = await _post_all(
                f"http://127.0.0.1:{echo_port}/", [body] * n, concurrency, {"Content-Type": "application/json"}
            )
            result["http_ceiling_per_s"] = n / elapsed
        finally:
            _stop_all([echo])

        max_jobs = 100
        result["arq_noop_jobs_per_s"] = await _arq_noop_ceiling(redis.url, n, workers, max_jobs, concurrency)
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

        events = _events(n, f"-{int(time.time())}")
        expected = sum(3 if e["type"] == "out_for_delivery" else 2 for e in events)
        bodies = [json.dumps(e).encode() for e in events]
        cpu_before = {p.pid: _cpu_seconds(p.pid) for p in [api, sandbox_proc, receiver, *worker_procs]}
        start_wall = time.time()
        start = time.perf_counter()
        post_elapsed, sent_at = await _post_all(
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
            return sum(_cpu_seconds(p.pid) - cpu_before[p.pid] for p in ps)

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
        info = await _redis_info(redis.url)
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
                    "p50": _pct(latencies, 50),
                    "p95": _pct(latencies, 95),
                    "p99": _pct(latencies, 99),
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
        _stop_all(procs)
        redis.stop()


async def _redis_info(url: str) -> dict[str, Any]:
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
    result = asyncio.run(_bench(args))
    print()
    print(_report(result))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2))
    sent_once = result["messages"] == result["expected_messages"] and result["duplicates"] == 0
    return 0 if sent_once and webhooks_ok(result["webhooks"]) else 1


def _main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "sandbox":
        timeout = float(argv[3]) if len(argv) > 3 else 30.0
        asyncio.run(_serve_sandbox(int(argv[1]), int(argv[2]), timeout, len(argv) > 4 and argv[4] == "1"))
    elif cmd == "echo":
        asyncio.run(_serve_echo(int(argv[1]), *argv[2:3]))
    elif cmd == "noop-worker":
        _noop_worker(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown bench helper {cmd!r}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        _main(sys.argv[1:])


# -- relay scenario ------------------------------------------------------------------------------
async def _bench_relay(args: argparse.Namespace) -> dict[str, Any]:
    """Allocations/s and routing latency of the masked-number relay, beside a bare Redis GET."""
    from redis.asyncio import Redis
    from twilio.request_validator import RequestValidator

    from .config import load_settings
    from .relay import PoolExhausted, Relay

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
        env = _hub_env(
            redis_server.url,
            api_port,
            HUB_TWILIO__BASE_URL="http://127.0.0.1:9/unused",
            HUB_RELAY__POOL=json.dumps(pool),
        )
        procs.append(_spawn(["-m", "hub", "api"], env))
        await _wait_http(f"http://127.0.0.1:{api_port}/healthz")
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
            "redis_get_ms": {"p50": _pct(gets, 50) * ms, "p99": _pct(gets, 99) * ms},
            "route_ms": {"p50": _pct(routes, 50) * ms, "p99": _pct(routes, 99) * ms},
            "webhook_ms": {"p50": _pct(hooks, 50) * ms, "p99": _pct(hooks, 99) * ms},
            "redis_gets_per_s": 1 / statistics.fmean(gets),
        }
    finally:
        _stop_all(procs)
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

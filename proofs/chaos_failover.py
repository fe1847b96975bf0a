"""``hub chaos redis-failover``: the Redis primary killed (SIGKILL) while events are posted to a
hub that reaches Redis through Sentinel; the provider fakes' ledgers checked afterwards.

The Redis side is three ``redis-server`` processes of the binary the tests use (a primary and
two replicas started with ``--replicaof``) and one sentinel (``redis-server sentinel.conf
--sentinel``, ``down-after-milliseconds`` 1000, ``failover-timeout`` 3000). Two replicas, because
the hub waits for one replica to confirm each accepted event and each claim
(``redis_sentinel.min_replicas_acked`` 1): after the failover the promoted replica still has one
replica of its own, so the hub takes events again without anyone restarting the dead primary.

The hub is ``hub api`` and one ``hub worker`` (proofs.common.start_stack) configured with the
sentinel only (no ``redis_url``), the Twilio fake sending status callbacks and a webhook
subscriber, as in production. Events are posted in batches at a steady pace, like an upstream
system: a batch that gets no answer or a 5xx is posted again with the same event ids after a
short pause, until it is answered 2xx. Once about a third of the events are accepted, the
primary is killed.

The verdict, per planned message (one per channel and address of an accepted event): every one
reached a provider (none missing), none twice, and every event answered 202 is known to the new
primary. The webhook figures are reported, not judged: Redis replication is asynchronous, and
the writes the hub does not wait for (outcomes, webhook records) may be lost with the primary
(docs/reliability.md). Recovery is timed from the kill: to the sentinel naming the new primary,
to the first batch answered 2xx, and to the first message of an event accepted after the kill
reaching a provider.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.redis_server import find_redis_server, free_port

from .common import BENCH_KEY, QUICK_RECOVERY, Stack, burst_events, start_stack, stop_all
from .webhook_check import webhook_figures, webhook_lines

__all__ = ["FailoverResult", "RedisGroup", "run_failover", "run_failover_cli"]

SERVICE = "mymaster"
BATCH = 10
RATE = 20.0  # events posted per second
KILL_AT = 0.35  # share of the events accepted when the primary is killed
RETRY_PAUSE = 0.1  # seconds before a batch is posted again
# No persistence (the replicas hold the data); a new replica's first sync streamed at once.
_NODE_OPTIONS = (
    *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "redis.log"),
    *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
)


@dataclass
class FailoverResult:
    """What one run found; ``ok`` when nothing accepted was lost and nothing sent twice."""

    events: int
    accepted_events: int = 0
    planned: int = 0
    sent_once: int = 0
    doubled: int = 0
    missing: int = 0
    lost_events: int = 0
    refused_posts: Counter[str] = field(default_factory=Counter)  # failed batch posts, by answer
    promoted_s: float = 0.0  # the kill -> the sentinel names the new primary
    accepting_s: float = 0.0  # the kill -> the first batch answered 2xx
    sending_s: float = 0.0  # the kill -> the first message of an event accepted after it at a provider
    settled: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self) -> bool:
        return (
            self.accepted_events == self.events
            and self.lost_events == 0
            and self.missing == 0
            and self.doubled == 0
            and self.sending_s > 0
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "refused_posts": dict(self.refused_posts), "ok": self.ok()}


def _client(port: int) -> Any:
    """A loopback client (typed Any: redis-py's sentinel and pipeline calls carry no annotations)."""
    return Redis(port=port, decode_responses=True, socket_connect_timeout=0.5)


class RedisGroup:
    """A primary, two replicas and a sentinel on free loopback ports, files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = find_redis_server()
        self.ports = [free_port() for _ in range(3)]  # the first starts as the primary
        self.sentinel_port = free_port()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, port: int, *args: str) -> None:
        node = self.root / str(port)
        node.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.binary, *args], cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def start(self, timeout: float = 30.0) -> None:
        primary, *replicas = self.ports
        self._spawn(primary, "--port", str(primary), *_NODE_OPTIONS)
        for port in replicas:
            self.start_replica(port, primary)
        # The sentinel learns of the replicas from the primary's INFO, asked at once, then every
        # 10 s: started after they are in sync, it knows them from the first answer.
        await self.until(lambda: self.synced(primary, len(replicas)), timeout, "the replicas")
        conf = self.root / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.root}\nlogfile sentinel.log\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 2\n"
        )
        self._spawn(self.sentinel_port, str(conf), "--sentinel")
        await self.until(lambda: self._ready(primary, len(replicas)), timeout, "the replicas and the sentinel")

    def start_replica(self, port: int, primary: int) -> None:
        """(Re)start the server on ``port`` as a replica of ``primary``."""
        self._spawn(port, "--port", str(port), *_NODE_OPTIONS, "--replicaof", "127.0.0.1", str(primary))

    async def until(self, check: Any, timeout: float, what: str) -> None:
        """Wait until ``check()`` (a coroutine function) is true, up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up within {timeout:.0f} s (logs in {self.root})")
            await asyncio.sleep(0.05)

    async def _ready(self, primary: int, replicas: int) -> bool:
        """The primary has every replica in sync, and the sentinel knows them all."""
        try:
            return await self.synced(primary, replicas) and len(await self._sentinel_replicas()) == replicas
        except (RedisError, OSError):
            return False

    async def synced(self, primary: int, replicas: int) -> bool:
        """``primary`` is a primary with ``replicas`` replicas online (caught up)."""
        try:
            async with _client(primary) as r:
                info = await r.info("replication")
        except (RedisError, OSError):
            return False
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return bool(info.get("role") == "master" and sum(v.get("state") == "online" for v in online) >= replicas)

    async def _sentinel_replicas(self) -> list[dict[str, Any]]:
        async with _client(self.sentinel_port) as s:
            found: list[dict[str, Any]] = await s.execute_command("SENTINEL SLAVES", SERVICE)
        return [r for r in found if not (r.get("is_sdown") or r.get("is_odown"))]

    async def primary(self) -> int:
        """The primary's port, as the sentinel names it now."""
        async with _client(self.sentinel_port) as s:
            _, port = await s.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.kill()
        proc.wait(5)

    async def promoted(self, old: int, timeout: float = 30.0) -> int:
        """Wait until the sentinel names a primary other than ``old``; returns its port."""
        found: list[int] = []

        async def named() -> bool:
            try:
                port = await self.primary()
            except (RedisError, OSError):
                return False
            found[:] = [port]
            return port != old

        await self.until(named, timeout, "a new primary")
        return found[0]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def planned_messages(events: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(channel, address) -> event id, for every message the events plan (see burst_events)."""
    out: dict[tuple[str, str], str] = {}
    for e in events:
        c = e["customer"]
        out[("sms", c["phone"].replace(" ", ""))] = e["event_id"]
        out[("push", c["push_tokens"][0])] = e["event_id"]
        if e["type"] == "out_for_delivery":
            out[("email", c["email"])] = e["event_id"]
    return out


class _Poster:
    """Posts the batches at ``RATE`` events/s, each again with the same ids until answered 2xx;
    notes when each event was accepted (unix time) and why posts failed."""

    def __init__(self, http: aiohttp.ClientSession, stack: Stack, events: list[dict[str, Any]]) -> None:
        self.http = http
        self.url = f"http://127.0.0.1:{stack.api_port}/v1/events/batch"
        self.batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        self.accepted_at: dict[str, float] = {}
        self.refused: Counter[str] = Counter()

    async def run(self, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}
        begin = time.monotonic()
        for i, batch in enumerate(self.batches):
            await asyncio.sleep(max(0.0, begin + i * BATCH / RATE - time.monotonic()))
            body = json.dumps(batch).encode()
            while not await self._post(body, headers):
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not accept a batch before the deadline")
                await asyncio.sleep(RETRY_PAUSE)

    async def _post(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            async with self.http.post(self.url, data=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
                if resp.status not in (200, 202):
                    self.refused[str(resp.status)] += 1
                    return False
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as e:
            self.refused[type(e).__name__] += 1
            return False
        now = time.time()
        for item in answer.get("results", answer.get("events", [])):
            if item.get("status") in ("accepted", "duplicate"):
                self.accepted_at.setdefault(item["event_id"], now)
        return True


async def _ledger(http: aiohttp.ClientSession, stack: Stack) -> list[dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/dump") as resp:
        entries: list[dict[str, Any]] = await resp.json()
        return entries


async def _quiet(redis: Any, ids: list[str]) -> bool:
    """Every accepted event processed, no message sending or waiting for a retry."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hget(f"hub:event:default:{event_id}", "state")
            states = await pipe.execute()
        if any(s != "done" for s in states):
            return False
        if await redis.zcard("hub:msgs:status:transient"):
            return False
        async for key in redis.scan_iter("hub:msg:*", count=1000):
            if key.count(":") == 2 and await redis.hget(key, "status") == "sending":
                return False
        return True
    except (RedisError, OSError):
        return False


async def _statuses(redis: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    async for key in redis.scan_iter("hub:msg:*", count=1000):
        if key.count(":") == 2:
            counts[await redis.hget(key, "status") or "?"] += 1
    return dict(counts)


async def run_failover(events: int = 200, timeout: float = 240.0) -> FailoverResult:
    """One run; see the module docstring."""
    begin = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hub-chaos-failover-"))
    group = RedisGroup(root)
    result = FailoverResult(events)
    stack: Stack | None = None
    try:
        await group.start()
        stack = await start_stack(
            "",
            1,
            20,
            fault_timeout=4.0,
            status_callbacks=True,
            subscriber=True,
            HUB_REDIS_URL="",  # the sentinel only
            HUB_REDIS_SENTINEL__SENTINELS=json.dumps([f"127.0.0.1:{group.sentinel_port}"]),
            HUB_REDIS_SENTINEL__SERVICE=SERVICE,
            unpaced=True,
            **QUICK_RECOVERY,
            # The default tries: an event that meets the new primary before a replica acknowledges
            # its writes waits without spending one (hub.worker: NotReplicated -> FreeRetry).
        )
        await _run(group, stack, result, events, begin + timeout)
    finally:
        if stack is not None:
            stop_all(stack.procs)
        group.stop()
    result.seconds = time.monotonic() - begin
    return result


async def _run(group: RedisGroup, stack: Stack, result: FailoverResult, n: int, deadline: float) -> None:
    events = burst_events(n, f"-failover-{int(time.time())}")
    planned = planned_messages(events)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        poster = _Poster(http, stack, events)
        posting = asyncio.get_running_loop().create_task(poster.run(deadline))
        while len(poster.accepted_at) < n * KILL_AT:
            if posting.done():
                await posting  # its error, if it failed
                raise RuntimeError("the events were posted before the kill was due")
            await asyncio.sleep(0.01)
        old = await group.primary()
        killed = time.time()
        group.kill(old)
        new = await group.promoted(old, timeout=max(1.0, deadline - time.monotonic()))
        result.promoted_s = time.time() - killed
        await posting
        result.refused_posts = poster.refused
        accepted = set(poster.accepted_at)
        ours = {k: e for k, e in planned.items() if e in accepted}
        async with Redis(port=new, decode_responses=True) as redis:
            ledger = await _settle(http, stack, redis, set(ours), sorted(accepted), deadline)
            result.settled = await _quiet(redis, sorted(accepted))
            result.statuses = await _statuses(redis)
            known = await asyncio.gather(*(redis.exists(f"hub:event:default:{i}") for i in sorted(accepted)))
            sms_taken = sum(1 for m in ledger if m["channel"] == "sms")
            result.webhooks = await webhook_figures(f"redis://127.0.0.1:{new}/0", stack.receiver_url, sms_taken)
    counts = Counter((m["channel"], m["to"]) for m in ledger)
    result.accepted_events = len(accepted)
    result.lost_events = sum(1 for k in known if not k)
    result.planned = len(ours)
    result.sent_once = sum(1 for k in ours if counts[k] == 1)
    result.missing = sum(1 for k in ours if counts[k] == 0)
    result.doubled = sum(c - 1 for c in counts.values() if c > 1)
    result.accepting_s = min((t for t in poster.accepted_at.values() if t > killed), default=killed) - killed
    later = {k for k, e in ours.items() if poster.accepted_at[e] > killed}
    arrivals = [_unix(m["received_at"]) for m in ledger if (m["channel"], m["to"]) in later]
    result.sending_s = min(arrivals, default=killed) - killed


async def _settle(
    http: aiohttp.ClientSession,
    stack: Stack,
    redis: Redis,
    ours: set[tuple[str, str]],
    ids: list[str],
    deadline: float,
) -> list[dict[str, Any]]:
    """The ledger once every planned message arrived and the hub is quiet (or the deadline)."""
    while True:
        ledger = await _ledger(http, stack)
        arrived = {(m["channel"], m["to"]) for m in ledger}
        if (arrived >= ours and await _quiet(redis, ids)) or time.monotonic() > deadline:
            await asyncio.sleep(0.5)  # the last receipts land
            return await _ledger(http, stack)
        await asyncio.sleep(0.25)


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def report(r: FailoverResult) -> str:
    refused = ", ".join(f"{n} x {why}" for why, n in r.refused_posts.most_common()) or "none"
    lines = [
        f"chaos redis-failover: {r.seconds:.0f} s",
        "  fault: kill -9 of the Redis primary; Sentinel promotes a replica",
        f"  events posted / accepted:      {r.events} / {r.accepted_events}",
        f"  batch posts refused:           {refused}",
        f"  planned messages:              {r.planned}",
        f"  sent exactly once:             {r.sent_once}",
        f"  sent twice:                    {r.doubled}",
        f"  missing (lost):                {r.missing}",
        f"  accepted events lost:          {r.lost_events}",
        f"  new primary named after (s):   {r.promoted_s:.1f}",
        f"  events accepted again after:   {r.accepting_s:.1f} s",
        f"  messages sent again after:     {r.sending_s:.1f} s",
        f"  settled:                       {'yes' if r.settled else 'no (deadline)'}",
        f"  send outcomes:                 {r.statuses}",
        *(webhook_lines(r.webhooks, indent="  ", width=31, colon=":") if r.webhooks else []),
        f"  verdict:                       {'ok' if r.ok() else 'FAILED'}",
    ]
    return "\n".join(lines)


def run_failover_cli(args: argparse.Namespace) -> int:
    r = asyncio.run(run_failover(args.events))
    print(report(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict()], indent=2))
    return 0 if r.ok() else 1

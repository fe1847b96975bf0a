"""``hub chaos <scenario>``: a fixed set of events posted while faults are injected, then the
provider fakes' ledgers checked against what should have been sent.

Every run starts its own Redis (AOF on), the sandbox providers, one `hub api` and ``--workers``
`hub worker` processes, exactly as ``hub bench`` does, and posts ``--events`` events in batches
of 20 through ``POST /v1/events/batch``, like an upstream system would: a batch that gets no
answer or a 5xx is posted again with the same event ids until it is accepted. Half the events
are ``out_for_delivery`` (SMS, push and e-mail), half ``arriving_soon`` (SMS and push), each for
its own customer, so every planned message has an address of its own in the ledgers.

Scenarios (faults are placed by progress: the share of planned messages the fakes hold):

``worker-kill``    kill -9 one worker at 20 % (a new one starts a second later), then every
                   worker at 55 % (all restarted a second later)
``redis-restart``  kill -9 Redis at 30 % and at 65 %, each time started again a second later on
                   the same port and AOF file, while events are posted at a steady pace;
                   ``--fsync always`` or ``everysec`` (what each may lose: docs/reliability.md)
``providers``      SMTP refusing connections, Twilio answering 500 (long enough for some SMS
                   to be dead-lettered), then 429 with Retry-After, then timing out, FCM
                   answering 503, each for a few seconds, then healed, while events are posted
                   at a steady pace; after the run, every dead letter is replayed once
``api-kill``       kill -9 the API process twice while batches are being posted; the client
                   posts the unanswered batches again
``lost-answers``   the providers take messages and lose their answers, ``LOST_PER_FAULT``
                   requests at a time, one fault after the other on each provider (the three
                   at once) while events are posted at a steady pace: Twilio holding the answer
                   past the client's timeout (``accept-stall``), closing the connection without
                   it (``accept-drop``), and the same without recording the message (``drop``,
                   ``timeout``); FCM and SMTP ``accept-stall`` and ``accept-drop``

The verdict counts, per planned message (one per channel and address): sent once, sent twice
(must be 0), and missing, with their status in the message log. A missing message is lost,
whatever the log says: one marked ``unknown`` that no provider received is lost too. The one
exception is ``worker-kill``: a worker killed during a provider call leaves its messages
``unknown`` (the hub never resends those, see docs/reliability.md), and up to what the killed
workers had in flight such losses are reported but allowed. Events answered 202 but unknown to
Redis afterwards are lost events. Messages in doubt (a send whose answer was lost, or a call a
kill cut off) are counted with how they ended. Recovery time is measured from the end of each
fault to the next message a fake receives, and "drained" from the end of the last fault to the
run's last message.

As in production, the Twilio fake sends status callbacks and a receiver is subscribed to every
webhook type. Webhooks are at least once (docs/webhooks.md): the verdict also requires that no
webhook id is missing at the receiver, i.e. every delivery the hub made arrived, and every status
a message passed through that is told upstream (``accepted``, ``unknown``, ``dead``, and each
applied Twilio report) arrived as a ``message.status`` for that message; repeats are counted,
not failed (``proofs.webhook_check.webhook_figures``).

``redis-restart`` with ``--fsync everysec``: Redis may lose the writes of about the last second
before a crash, and postpones the AOF write itself for up to 2 s while a slow fsync runs (its
aof.c), so ``FSYNC_WINDOW`` is 2 s. The run notes when it killed Redis; messages sent twice or
lost, and status webhooks missing, are each allowed up to the number of messages the fakes
received in the window before each kill (the writes that window could hold), and an accepted
event may be lost only if its post was in flight during such a window. Anything beyond fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.redis_server import EmbeddedRedis

from .common import BENCH_ADMIN_KEY, BENCH_KEY, QUICK_RECOVERY, Stack, burst_events, start_stack, stop_all
from .webhook_check import settle_webhooks, webhook_figures, webhook_lines

__all__ = ["SCENARIOS", "ChaosResult", "run_chaos", "run_chaos_cli"]

SCENARIOS = ("worker-kill", "redis-restart", "providers", "api-kill", "lost-answers")
BATCH = 20
LEAD = 150  # messages posted ahead of what the fakes hold
MAX_JOBS = 20
FSYNC_WINDOW = 2.0  # seconds of writes appendfsync everysec may lose before a crash (module docstring)


@dataclass
class ChaosResult:
    """What one run found; ``ok`` when nothing was doubled or lost beyond what the scenario allows."""

    scenario: str
    events: int
    accepted_events: int
    planned: int
    sent_once: int = 0
    doubled: int = 0
    missing: int = 0
    missing_by_status: dict[str, int] = field(default_factory=dict)
    # Lost messages allowed: those a kill -9 cut off during the provider call (worker-kill only).
    cut_off_allowed: int = 0
    in_doubt_by_status: dict[str, int] = field(default_factory=dict)  # how in-doubt messages ended
    unknown_received: int = 0  # unknown in the log, yet the provider has it (once)
    faulted_requests: dict[str, int] = field(default_factory=dict)  # per provider, from the fakes
    lost_events: int = 0
    faults: list[str] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)
    drained_s: float = 0.0
    replayed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    post_retries: int = 0
    seconds: float = 0.0
    fsync: str = ""
    # The subscriber's webhooks and the status callbacks applied (proofs.webhook_check.webhook_figures).
    webhooks: dict[str, Any] = field(default_factory=dict)
    # redis-restart: when Redis was killed (unix time); with everysec, what may be lost then.
    redis_kills: list[float] = field(default_factory=list)
    fsync_allowance: int = 0  # everysec: messages the fakes received in the FSYNC_WINDOW before each kill
    lost_events_outside_window: int = 0  # everysec: lost events whose post met no such window

    @property
    def in_doubt(self) -> int:
        """Messages whose send was in doubt: an answer lost, or a call cut off by a kill."""
        return sum(self.in_doubt_by_status.values())

    @property
    def unknown(self) -> int:
        return self.statuses.get("unknown", 0)

    @property
    def lost(self) -> int:
        """Planned messages no provider received, whatever their status (``unknown`` included)."""
        return self.missing

    @property
    def allowed_lost(self) -> int:
        """Of the lost, those the scenario allows: ``unknown`` ones a worker kill cut off."""
        return min(self.missing_by_status.get("unknown", 0), self.cut_off_allowed)

    @property
    def webhooks_missing(self) -> int:
        """Webhook ids the receiver never got: deliveries the hub made, and statuses to tell."""
        return int(self.webhooks.get("missing_ids", 0)) + int(self.webhooks.get("status_missing", 0))

    @property
    def everysec(self) -> bool:
        return self.scenario == "redis-restart" and self.fsync == "everysec"

    def ok(self) -> bool:
        """No message twice, no accepted event lost, no message lost beyond what the scenario
        allows, no webhook id missing, no bad signature. With ``fsync=everysec`` a Redis crash may
        lose the writes of the ``FSYNC_WINDOW`` before it: doubles and losses up to
        ``fsync_allowance``, events only if posted in that window (module docstring)."""
        if self.webhooks.get("refused", 0):
            return False
        if self.everysec:
            return (
                self.doubled + self.lost <= self.fsync_allowance
                and self.webhooks_missing <= self.fsync_allowance
                and self.lost_events_outside_window == 0
            )
        return (
            self.doubled == 0
            and self.lost_events == 0
            and self.lost == self.allowed_lost
            and self.webhooks_missing == 0
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(
            in_doubt=self.in_doubt,
            unknown=self.unknown,
            lost=self.lost,
            webhooks_missing=self.webhooks_missing,
            ok=self.ok(),
        )
        return out


class _Progress:
    """Polls the fakes' ledger; remembers when new messages arrived, per channel."""

    def __init__(self, http: aiohttp.ClientSession, sandbox_port: int) -> None:
        self.http = http
        self.url = f"http://127.0.0.1:{sandbox_port}/bench/count"
        self.count = 0
        self.by_channel: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str]] = []  # (when, channel) of each poll that saw news
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(self.url) as resp:
                    counts = Counter[str](await resp.json())
                now = time.monotonic()
                for channel, n in counts.items():
                    if n > self.by_channel[channel]:
                        self.arrivals.append((now, channel))
                self.by_channel = counts
                self.count = sum(counts.values())
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def at_least(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count} of {n} messages arrived before a fault was due")
            await asyncio.sleep(0.05)

    def next_after(self, moment: float, channel: str | None = None) -> float | None:
        """Seconds from ``moment`` to the first arrival after it (on ``channel``, if given)."""
        later = [t for t, ch in self.arrivals if t > moment and channel in (None, ch)]
        return later[0] - moment if later else None


class _Poster:
    """Posts the batches like an upstream system: again, with the same ids, until answered 2xx."""

    def __init__(self, http: aiohttp.ClientSession, stack: Stack, events: list[dict[str, Any]]) -> None:
        self.http = http
        self.url = f"http://127.0.0.1:{stack.api_port}/v1/events/batch"
        self.batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        self.accepted: set[str] = set()
        # event id -> (unix time its accepted post went out, time the answer came): Redis wrote it
        # in between.
        self.posted: dict[str, tuple[float, float]] = {}
        self.retries = 0
        self.in_flight = asyncio.Event()

    async def run(self, deadline: float, progress: _Progress, rate: float = 0.0) -> None:
        """Posts batch after batch, keeping at most ``LEAD`` messages' worth of events ahead of
        what the fakes hold (or at ``rate`` events/s), so posting goes on for the whole run and
        meets every fault."""
        headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}
        planned_so_far = 0
        begin = time.monotonic()
        for i, batch in enumerate(self.batches):
            if rate:
                await asyncio.sleep(max(0.0, begin + i * BATCH / rate - time.monotonic()))
            while not rate and progress.count < planned_so_far - LEAD and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # (paced runs keep their pace: dead letters never arrive)
            planned_so_far += len(_planned(batch, {e["event_id"] for e in batch}))
            body = json.dumps(batch).encode()
            first = time.time()  # an earlier, unanswered post of the batch may have written it
            while True:
                self.in_flight.set()
                try:
                    async with self.http.post(self.url, data=body, headers=headers) as resp:
                        answer = await resp.json(content_type=None)
                        if resp.status in (200, 202):
                            for item in answer.get("results", answer.get("events", [])):
                                if item.get("status") in ("accepted", "duplicate"):
                                    self.accepted.add(item["event_id"])
                                    self.posted[item["event_id"]] = (first, time.time())
                            break
                except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
                    pass
                finally:
                    self.in_flight.clear()
                self.retries += 1
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not accept a batch before the deadline")
                await asyncio.sleep(0.2)


def _planned(events: list[dict[str, Any]], accepted: set[str]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for e in events:
        if e["event_id"] not in accepted:
            continue
        c = e["customer"]
        out |= {("sms", c["phone"].replace(" ", "")), ("push", c["push_tokens"][0])}
        if e["type"] == "out_for_delivery":
            out.add(("email", c["email"]))
    return out


# Twilio's reports after it took an SMS (status callbacks): the send's outcome was ``accepted``.
_REPORTED = frozenset({"sent", "delivered", "undelivered"})


def _outcome(status: str | None) -> str:
    return "accepted" if status in _REPORTED else status or "?"


async def _message_statuses(redis: Redis) -> dict[tuple[str, str], str]:
    """(channel, address) -> how the send ended, from the message log: its status, with an SMS
    that Twilio's callbacks moved on to ``sent`` or ``delivered`` counted as ``accepted``."""
    out: dict[tuple[str, str], str] = {}
    async for key in redis.scan_iter("hub:msg:*", count=1000):
        if key.endswith(":history"):
            continue
        channel, to, status = await redis.hmget(key, ["channel", "to", "status"])
        if channel and to:
            out[(channel, to)] = _outcome(status)
    return out


async def _in_doubt(redis: Redis) -> dict[tuple[str, str], str]:
    """(channel, address) -> how the send ended (as ``_message_statuses``), of the messages whose
    send was in doubt: an ``in_doubt`` step in the history (an answer lost), or ``unknown`` now
    (also a call a worker kill cut off)."""
    ids = [key async for key in redis.scan_iter("hub:msg:*", count=1000) if not key.endswith(":history")]
    async with redis.pipeline(transaction=False) as pipe:
        for key in ids:
            pipe.hmget(key, ["channel", "to", "status"])
            pipe.lrange(f"{key}:history", 0, -1)
        found = await pipe.execute()
    out: dict[tuple[str, str], str] = {}
    for (channel, to, status), history in zip(found[::2], found[1::2], strict=True):
        doubted = status == "unknown" or any(json.loads(h).get("status") == "in_doubt" for h in history)
        if channel and to and doubted:
            out[(channel, to)] = _outcome(status)
    return out


async def _settled(redis: Redis, ids: list[str], source: str = "default") -> bool:
    """Every event processed and no message still waiting for a retry or a worker."""
    async with redis.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.hget(f"hub:event:{source}:{event_id}", "state")
        states = await pipe.execute()
    if any(s != "done" for s in states):
        return False
    waiting = await redis.zcard("hub:msgs:status:transient") + await redis.zcard("hub:msgs:status:replaying")
    if waiting:
        return False
    statuses = Counter((await _message_statuses(redis)).values())
    return not statuses.get("sending")


async def _ledger(http: aiohttp.ClientSession, stack: Stack) -> list[dict[str, Any]]:
    """What the fakes received: channel, to, received_at (ISO) of each message."""
    async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/dump") as resp:
        entries: list[dict[str, Any]] = await resp.json()
        return entries


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _fault(http: aiohttp.ClientSession, stack: Stack, provider: str, mode: str | None, count: int = 0) -> None:
    async with http.post(
        f"{stack.origin}/faults", json={"provider": provider, "mode": mode, "count": count or None}
    ) as resp:
        resp.raise_for_status()


async def _faulted(http: aiohttp.ClientSession, stack: Stack) -> dict[str, int]:
    """Requests a fault has failed so far, per provider (the fakes' count)."""
    async with http.get(f"{stack.origin}/faults") as resp:
        resp.raise_for_status()
        return {provider: int(state["triggered"]) for provider, state in (await resp.json()).items()}


async def _kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)


Inject = Callable[["_Run"], Coroutine[Any, Any, None]]


@dataclass
class _Run:
    stack: Stack
    redis: EmbeddedRedis
    http: aiohttp.ClientSession
    progress: _Progress
    poster: _Poster
    planned: int
    result: ChaosResult
    fault_ends: list[tuple[float, str | None]] = field(default_factory=list)

    async def at(self, share: float) -> None:
        await self.progress.at_least(int(self.planned * share))

    def note(self, text: str) -> None:
        self.result.faults.append(text)

    def ended(self, channel: str | None = None) -> None:
        """The fault is over; recovery is the time to the next message (on ``channel``)."""
        self.fault_ends.append((time.monotonic(), channel))


async def _worker_kill(run: _Run) -> None:
    await run.at(0.20)
    await _kill(run.stack.workers[0])
    run.note("kill -9 of one worker process")
    await asyncio.sleep(1.0)
    run.stack.workers.pop(0)
    run.stack.spawn_worker()
    run.ended()
    await run.at(0.55)
    alive = list(run.stack.workers)
    await asyncio.gather(*(_kill(w) for w in alive))
    run.note(f"kill -9 of all {len(alive)} worker processes")
    run.stack.workers.clear()
    await asyncio.sleep(1.0)
    for _ in alive:
        run.stack.spawn_worker()
    run.ended()


# Seconds the events of a worker-kill run are posted over: a worker fast enough to catch up
# with whatever is posted must still have events to take after each kill (posting only ahead of
# what the fakes hold, it could send the whole run in the second the first kill waits).
WORKER_SPAN = 10.0
REDIS_SPAN = 16.0  # seconds the events of a redis-restart run are posted over


async def _redis_restart(run: _Run) -> None:
    for share in (0.30, 0.65):
        await run.at(share)
        run.result.redis_kills.append(time.time())
        run.redis.kill()
        run.note(f"kill -9 of Redis (appendfsync {run.result.fsync})")
        await asyncio.sleep(1.0)
        run.redis.start()
        run.ended()


PROVIDER_FAULTS: tuple[tuple[str, str, float], ...] = (
    ("smtp", "refuse", 3.0),
    ("twilio", "500", 12.0),  # longer than the retries last: these messages end dead, then replayed
    ("twilio", "429", 3.0),
    ("twilio", "timeout", 3.0),
    ("fcm", "503", 3.0),
)
CHANNEL_OF = {"smtp": "email", "twilio": "sms", "fcm": "push"}


GAP = 1.0  # seconds of health before each provider fault
PROVIDERS_SPAN = sum(seconds + GAP for *_, seconds in PROVIDER_FAULTS) + 2 * GAP  # events are posted over it


async def _providers(run: _Run) -> None:
    for provider, mode, seconds in PROVIDER_FAULTS:
        await asyncio.sleep(GAP)
        await _fault(run.http, run.stack, provider, mode)
        run.note(f"{provider} answering {mode} to every request for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        await _fault(run.http, run.stack, provider, None)
        run.ended(CHANNEL_OF[provider])


LOST_ANSWER_FAULTS: tuple[tuple[str, str], ...] = (
    ("twilio", "accept-stall"),  # Twilio has the SMS; the hub finds it in the list
    ("twilio", "accept-drop"),
    ("twilio", "drop"),  # Twilio has nothing; the hub finds nothing and sends it
    ("twilio", "timeout"),
    ("fcm", "accept-stall"),  # the provider has it; the hub cannot ask: unknown
    ("fcm", "accept-drop"),
    ("smtp", "accept-stall"),
    ("smtp", "accept-drop"),
)
LOST_PER_FAULT = 10  # requests each fault takes
LOST_SPAN = 30.0  # seconds the events of a lost-answers run are posted over


async def _lost_answers(run: _Run) -> None:
    """Each provider's faults one after the other, the three providers at the same time."""

    async def one_by_one(provider: str) -> None:
        for mode in (m for p, m in LOST_ANSWER_FAULTS if p == provider):
            await asyncio.sleep(GAP)
            before = (await _faulted(run.http, run.stack))[provider]
            await _fault(run.http, run.stack, provider, mode, LOST_PER_FAULT)
            deadline = time.monotonic() + 10.0
            while (taken := (await _faulted(run.http, run.stack))[provider] - before) < LOST_PER_FAULT:
                if time.monotonic() > deadline:
                    await _fault(run.http, run.stack, provider, None)
                    break
                await asyncio.sleep(0.05)
            run.note(f"{provider} {mode} for {taken} requests")
            run.ended(CHANNEL_OF[provider])

    await asyncio.gather(*(one_by_one(p) for p in dict.fromkeys(p for p, _ in LOST_ANSWER_FAULTS)))


async def _api_kill(run: _Run) -> None:
    for share in (0.0, 0.25):
        await run.at(share)
        while not run.poster.in_flight.is_set():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.003)  # inside the batch's request
        await _kill(run.stack.api)
        run.note("kill -9 of the API process during a batch post")
        await asyncio.sleep(0.5)
        await run.stack.restart_api()
        run.ended()


INJECTORS: dict[str, Inject] = {
    "worker-kill": _worker_kill,
    "redis-restart": _redis_restart,
    "providers": _providers,
    "api-kill": _api_kill,
    "lost-answers": _lost_answers,
}


async def run_chaos(scenario: str, events: int = 400, workers: int = 2, fsync: str = "always") -> ChaosResult:
    """One chaos run; see the module docstring."""
    if scenario not in INJECTORS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    begin = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"hub-chaos-{scenario}-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=True, appendfsync=fsync).start()
    stack = await start_stack(
        redis_server.url,
        workers,
        MAX_JOBS,
        fault_timeout=4.0,
        status_callbacks=True,
        subscriber=True,
        unpaced=True,
        **QUICK_RECOVERY,
        HUB_WORKER__MAX_TRIES="6",
        HUB_TWILIO__TIMEOUT="1.5",
        HUB_SMTP__TIMEOUT="3",
        HUB_FCM__TIMEOUT="3",
        HUB_WEBHOOKS__TIMEOUT="2",
    )
    batch_events = burst_events(events, f"-chaos-{int(time.time())}")
    all_planned = len(_planned(batch_events, {e["event_id"] for e in batch_events}))
    result = ChaosResult(scenario, events, 0, all_planned, fsync=fsync if scenario == "redis-restart" else "")
    if scenario == "worker-kill":
        result.cut_off_allowed = (1 + workers) * MAX_JOBS  # what the killed workers had in flight
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            progress = _Progress(http, stack.sandbox_port)
            progress.start()
            poster = _Poster(http, stack, batch_events)
            run = _Run(stack, redis_server, http, progress, poster, all_planned, result)
            deadline = time.monotonic() + 120 + events / 5
            inject = asyncio.get_running_loop().create_task(INJECTORS[scenario](run))
            span = {
                "providers": PROVIDERS_SPAN,
                "redis-restart": REDIS_SPAN,
                "lost-answers": LOST_SPAN,
                "worker-kill": WORKER_SPAN,
            }.get(scenario)
            await poster.run(deadline, progress, rate=events / span if span else 0.0)
            await inject
            ids = sorted(poster.accepted)
            while not await _settled_safely(redis, ids):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)  # the last fake receipts land
            if scenario == "providers":
                result.replayed = await _replay_dead(http, stack)
                if result.replayed:
                    while not await _settled_safely(redis, ids) and time.monotonic() < deadline:
                        await asyncio.sleep(0.25)
                    await asyncio.sleep(0.5)
            await progress.stop()
            # The webhooks of the last messages, and those a killed worker held (their jobs run
            # again once arq's lease on them ends: webhooks.timeout + 30 s).
            await settle_webhooks(redis_server.url, stack.receiver_url, timeout=max(5.0, deadline - time.monotonic()))
            dump = await _ledger(http, stack)
            ledger = Counter((m["channel"], m["to"]) for m in dump)
            statuses = await _message_statuses(redis)
            doubted = await _in_doubt(redis)
            result.faulted_requests = await _faulted(http, stack)
            planned = _planned(batch_events, poster.accepted)
            unknown_to_redis = await _unknown_events(redis, ids)
            sms_taken = sum(1 for m in dump if m["channel"] == "sms")
            result.webhooks = await webhook_figures(redis_server.url, stack.receiver_url, sms_taken)
        result.accepted_events = len(poster.accepted)
        result.planned = len(planned)
        result.post_retries = poster.retries
        result.sent_once = sum(1 for k in planned if ledger[k] == 1)
        result.doubled = sum(c - 1 for c in ledger.values() if c > 1)
        missing = [k for k in planned if ledger[k] == 0]
        result.missing = len(missing)
        result.missing_by_status = dict(Counter(statuses.get(k, "none") for k in missing))
        result.statuses = dict(Counter(statuses.values()))
        result.in_doubt_by_status = dict(Counter(doubted.values()))
        result.unknown_received = sum(1 for k, s in statuses.items() if s == "unknown" and ledger[k] >= 1)
        result.lost_events = len(unknown_to_redis)
        windows = [(kill - FSYNC_WINDOW, kill) for kill in result.redis_kills] if result.everysec else []
        received = [_unix(m["received_at"]) for m in dump]
        result.fsync_allowance = sum(1 for at in received for start, end in windows if start <= at <= end)

        def in_a_window(event_id: str) -> bool:
            sent, answered = poster.posted[event_id]
            return any(sent <= end and answered >= start for start, end in windows)

        result.lost_events_outside_window = sum(1 for event_id in unknown_to_redis if not in_a_window(event_id))
        result.recovery_s = [r for r in (progress.next_after(t, ch) for t, ch in run.fault_ends) if r is not None]
        last = progress.arrivals[-1][0] if progress.arrivals else time.monotonic()
        result.drained_s = max(0.0, last - run.fault_ends[-1][0]) if run.fault_ends else 0.0
        result.seconds = time.monotonic() - begin
        return result
    finally:
        await redis.aclose()
        stop_all(stack.procs)
        redis_server.stop()


async def _settled_safely(redis: Redis, ids: list[str]) -> bool:
    """``_settled``, or False while Redis is restarting."""
    try:
        return await _settled(redis, ids)
    except (RedisError, OSError):
        return False


async def _unknown_events(redis: Redis, ids: list[str]) -> list[str]:
    """Of the accepted event ids, those Redis does not know (lost)."""
    async with redis.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.exists(f"hub:event:default:{event_id}")
        known = await pipe.execute()
    return [event_id for event_id, exists in zip(ids, known, strict=True) if not exists]


async def _replay_dead(http: aiohttp.ClientSession, stack: Stack) -> int:
    since = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
    async with http.post(
        f"http://127.0.0.1:{stack.api_port}/v1/messages/replay",
        json={"since": since},
        headers={"Authorization": f"Bearer {BENCH_ADMIN_KEY}"},
    ) as resp:
        resp.raise_for_status()
        return len((await resp.json())["queued"])


def _report(r: ChaosResult) -> str:
    rec = ", ".join(f"{s:.1f}" for s in r.recovery_s) or "-"
    lines = [
        f"chaos {r.scenario}" + (f" (appendfsync {r.fsync})" if r.fsync else "") + f": {r.seconds:.0f} s",
        *(f"  fault: {f}" for f in r.faults),
        f"  events posted / accepted:      {r.events} / {r.accepted_events} ({r.post_retries} batch posts retried)",
        f"  planned messages:              {r.planned}",
        f"  sent exactly once:             {r.sent_once}",
        f"  sent twice:                    {r.doubled}",
        f"  missing (lost):                {r.missing} {r.missing_by_status or ''}"
        + (f", {r.allowed_lost} cut off by a kill (allowed)" if r.allowed_lost else ""),
        f"  accepted events lost:          {r.lost_events}",
        f"  in doubt:                      {r.in_doubt} {r.in_doubt_by_status or ''}",
        f"  unknown (provider has it):     {r.unknown} ({r.unknown_received})",
        f"  requests faulted:              {r.faulted_requests}",
        f"  dead letters replayed:         {r.replayed}",
        f"  recovery after each fault (s): {rec}",
        f"  drained after the last (s):    {r.drained_s:.1f}",
        f"  send outcomes:                 {r.statuses}",
        *(webhook_lines(r.webhooks, indent="  ", width=31, colon=":") if r.webhooks else []),
    ]
    if r.everysec:
        lines.append(
            f"  everysec allowance:            {r.fsync_allowance} (messages received in the {FSYNC_WINDOW:.0f} s "
            f"before each of {len(r.redis_kills)} kills); used: {r.doubled} twice + {r.lost} lost, "
            f"{r.webhooks_missing} webhooks missing; events lost outside the windows: "
            f"{r.lost_events_outside_window}"
        )
    lines.append(f"  verdict:                       {'ok' if r.ok() else 'FAILED'}")
    return "\n".join(lines)


def run_chaos_cli(args: argparse.Namespace) -> int:
    results = []
    for scenario in SCENARIOS if args.scenario == "all" else (args.scenario,):
        fsyncs = ("always", "everysec") if scenario == "redis-restart" and not args.fsync else (args.fsync or "always",)
        for fsync in fsyncs:
            r = asyncio.run(run_chaos(scenario, args.events, args.workers, fsync))
            print(_report(r), flush=True)
            results.append(r.to_dict())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1

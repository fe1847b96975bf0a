"""A worker stopped mid-batch (gracefully or with kill -9) and restarted loses nothing and
sends nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import Hub
from tests.events import due_now

ROOT = Path(__file__).resolve().parents[1]
EVENTS = 120


def worker_env(hub: Hub, **extra: str) -> dict[str, str]:
    s = hub.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "HUB_CONFIG": str(ROOT / "config.yaml"),
            "HUB_REDIS_URL": str(s.redis_url),
            "HUB_SECRET_KEY": str(s.secret_key),
            "HUB_PUBLIC_URL": s.public_url,
            "HUB_TWILIO__BASE_URL": s.twilio.base_url,
            "HUB_FCM__BASE_URL": s.fcm.base_url,
            "HUB_SMTP__PORT": str(s.smtp.port),
            "HUB_WORKER__MAX_JOBS": "4",
            "HUB_WORKER__RETRY_BASE_DELAY": "0.1",
            "HUB_LOG_LEVEL": "WARNING",
            # These workers run on the wall clock: no quiet hours, whatever the time of the run,
            # and no pacing, so the batch is quick.
            "HUB_POLICY__QUIET_HOURS": "",
            "HUB_POLICY__SENDER_RATE": "{sms: 0, email: 0, push: 0}",
            **extra,
        }
    )
    return env


def start_worker(hub: Hub, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=worker_env(hub, **extra), cwd=ROOT)


async def post_events(hub: Hub) -> list[str]:
    events = due_now(EVENTS, "restart", 10000000)
    resp = await hub.request("POST", "/v1/events/batch", json=events)
    assert resp.status == 202
    return [e["event_id"] for e in events]


async def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def all_done(redis_url: str, ids: list[str]) -> bool:
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with r.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hget(f"hub:event:default:{event_id}", "state")
            states = await pipe.execute()
    finally:
        await r.aclose()
    return all(s == "done" for s in states)


async def statuses(redis_url: str) -> Counter[str]:
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        counts: Counter[str] = Counter()
        async for key in r.scan_iter("hub:msg:*"):
            if not key.endswith(":history"):
                counts[await r.hget(key, "status") or "?"] += 1
        return counts
    finally:
        await r.aclose()


async def nothing_waiting(redis_url: str) -> bool:
    counts = await statuses(redis_url)
    return not any(counts[s] for s in ("sending", "transient", "deferred", "replaying"))


async def stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    # Wait in a thread: the sandbox providers run on this event loop and must keep answering
    # while the worker finishes its in-flight jobs.
    proc.send_signal(sig)
    await asyncio.to_thread(proc.wait, 30)


@pytest.mark.slow
async def test_worker_stopped_gracefully_mid_batch_resumes_and_sends_each_message_once(hub: Hub) -> None:
    ids = await post_events(hub)
    worker = start_worker(hub)
    try:
        await mid_batch(hub)
        await stop(worker, signal.SIGTERM)
        assert len(hub.messages()) < 2 * EVENTS, "the worker finished before it was stopped"
        worker = start_worker(hub)
        await wait_for(lambda: all_done(hub.settings.redis_url or "", ids), 90)
    finally:
        if worker.poll() is None:
            await stop(worker, signal.SIGTERM)
    sent = Counter(m["to"] for m in hub.messages())
    assert len(sent) == 2 * EVENTS
    assert max(sent.values()) == 1
    counts = await statuses(hub.settings.redis_url or "")
    assert counts["accepted"] == 2 * EVENTS, counts


@pytest.mark.slow
async def test_worker_killed_mid_batch_never_duplicates_and_accounts_for_every_message(hub: Hub) -> None:
    ids = await post_events(hub)
    # A short job timeout makes arq hand the killed worker's jobs to the next worker quickly.
    worker = start_worker(hub, HUB_WORKER__JOB_TIMEOUT="1")
    try:
        await mid_batch(hub)
        await stop(worker, signal.SIGKILL)
        assert len(hub.messages()) < 2 * EVENTS
        worker = start_worker(hub, HUB_WORKER__JOB_TIMEOUT="1")
        await wait_for(lambda: all_done(hub.settings.redis_url or "", ids), 180)  # ~20 s, 16 of them arq's lease
        # An SMS the kill cut off is looked up at Twilio; one Twilio never got waits as an in-doubt
        # retry (about twilio.timeout) before it is sent: wait until no message is still on its way.
        await wait_for(lambda: nothing_waiting(hub.settings.redis_url or ""), 180)
    finally:
        if worker.poll() is None:
            await stop(worker, signal.SIGTERM)
    sent = Counter(m["to"] for m in hub.messages())
    assert max(sent.values()) == 1, "a message was sent twice"
    counts = await statuses(hub.settings.redis_url or "")
    # Messages whose provider call was cut off by the kill are "unknown" when no lookup could
    # settle them (a push; an SMS is looked up at Twilio), and are not resent. Every other message
    # was sent exactly once.
    assert counts["accepted"] + counts["unknown"] == 2 * EVENTS, counts
    assert counts["accepted"] <= len(sent) <= 2 * EVENTS
    assert counts["unknown"] <= 2 * 4  # at most the in-flight jobs' messages


async def mid_batch(hub: Hub) -> None:
    """Return as the 30th of the batch's 240 messages reaches the sandbox (woken by the ledger,
    not by polling it), so the signal that follows finds the batch mostly unsent: the providers
    answer on this test's event loop, and a worker told to stop starts no job after the poll it is
    in (at most 100 jobs, arq's read limit, and in practice the few its free slots take)."""
    await hub.ledger.wait_for(count=30, timeout=60)

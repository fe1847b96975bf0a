"""Redis failing at the worst moment for exactly-once: between a message's claim landing and its
answer reaching the worker. A real TCP proxy sits between the worker's runtime and the real
redis-server and cuts every connection right after the claim script has been sent, then refuses
connections for a while (an outage longer than the claim's patience)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from hub import lua_log
from hub.records import CLAIMED, FRESH, Found, MessageRecord
from hub.redis_server import free_port
from hub.schema import parse_event
from hub.store import HubStore
from tests.conftest import Hub, a_runtime
from tests.events import make_event

CLAIM_SHA = hashlib.sha1(lua_log.CLAIM_MESSAGE.encode()).hexdigest().encode()


class CuttingProxy:
    """Forwards bytes between clients and Redis; once armed, the first request carrying
    ``trigger`` is forwarded but no answer is after it: every connection is cut and new ones
    are refused for ``outage`` seconds."""

    def __init__(self, target_host: str, target_port: int, outage: float, trigger: bytes) -> None:
        self.target = (target_host, target_port)
        self.outage = outage
        self.trigger = trigger
        self.armed = False
        self.cutting = False
        self.cuts = 0
        self.down_until = 0.0
        self.port = free_port()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()

    def _down(self) -> bool:
        return asyncio.get_running_loop().time() < self.down_until

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down():
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await src.read(65536):
                    if self.cutting and not watch:
                        continue  # Redis's answers are lost
                    hit = watch and self.armed and self.trigger in chunk
                    if hit:
                        self.armed, self.cutting = False, True
                    dst.write(chunk)
                    await dst.drain()
                    if hit:
                        self.cuts += 1
                        await asyncio.sleep(0.05)  # Redis runs the script; its answer is dropped
                        self.down_until = asyncio.get_running_loop().time() + self.outage
                        for w in list(self._writers):
                            w.transport.abort()
                        self.cutting = False
                        return

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


def queued_event() -> dict[str, Any]:
    """An event as the API puts it on the queue (validated, normalized)."""
    return parse_event(make_event("arriving_soon", data={"minutes": 10}), "DE").to_job()


@contextlib.asynccontextmanager
async def cutting_proxy(hub: Hub, trigger: bytes, outage: float) -> AsyncIterator[CuttingProxy]:
    target = urlsplit(str(hub.settings.redis_url))
    r = aioredis.Redis.from_url(str(hub.settings.redis_url))
    try:  # scripts loaded, so the trigger is the real call and not a NOSCRIPT first try
        for script in (lua_log.CLAIM_MESSAGE, lua_log.RELEASE_CLAIM):
            await r.script_load(script)
    finally:
        await r.aclose()
    proxy = CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379, outage, trigger)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def statuses_of(hub: Hub) -> dict[str, list[str]]:
    listed = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    return {m["channel"]: [h["status"] for h in m["history"]] for m in listed["messages"]}


@pytest.mark.settings(**{"worker.job_timeout": 2})  # the claim's patience: 0.5 s
async def test_a_claim_whose_answer_redis_lost_is_given_back_and_sent_once_by_its_retry(hub: Hub) -> None:
    event = queued_event()
    async with cutting_proxy(hub, CLAIM_SHA, outage=1.5) as proxy, a_runtime(hub, port=proxy.port) as runtime:
        proxy.armed = True
        with pytest.raises(RedisConnectionError):
            await runtime.process("default", event)
        assert proxy.cuts == 1
        await asyncio.wait_for(runtime.settle(), 10)  # given back once Redis answers again
        # The claim cut (and any other whose answer the cut lost): landed, then given back as a
        # retry due now, with a job of its own.
        cut = [ch for ch, steps in (await statuses_of(hub)).items() if steps == ["sending", "transient"]]
        assert cut, await statuses_of(hub)
        assert [m["channel"] for m in hub.messages()] == []  # and not sent
        outcome = await runtime.process("default", event)  # the event job's next try leaves them to it
    assert {outcome.messages[m] for m in outcome.messages} <= {"accepted", "transient"}
    await hub.run_worker()  # the given-back messages' own jobs
    assert sorted(m["channel"] for m in hub.messages()) == ["push", "sms"]  # arriving_soon's channels, once
    statuses = await statuses_of(hub)
    assert all(statuses[ch] == ["sending", "transient", "sending", "accepted"] for ch in cut), statuses
    listed = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    assert all(m["attempts"] == 1 for m in listed["messages"]), listed  # the given-back try is not counted


@pytest.mark.settings(**{"worker.job_timeout": 2})  # inline patience for an outcome: 1 s
async def test_an_outcome_redis_could_not_take_during_the_job_is_recorded_after_it_once(hub: Hub) -> None:
    event = queued_event()
    accepted = b'"status": "accepted"'  # the history entry in the outcome's write
    # Both providers take their message and hold the answer until both have one, so every claim
    # has been answered before the first outcome is written and cut. (Left to timing, the SMS,
    # whose claim waits for its sender's pace, could still be waiting for its claim's answer
    # when the push's outcome was cut: that claim is then given back, and the SMS not sent.)
    for provider in ("twilio", "fcm"):
        hub.sandbox.faults.set(provider, "accept-stall", count=1)
    async with cutting_proxy(hub, accepted, outage=2.5) as proxy, a_runtime(hub, port=proxy.port) as runtime:
        proxy.armed = True
        job = asyncio.create_task(runtime.process("default", event))
        await hub.ledger.wait_for(count=2, timeout=30)
        hub.sandbox.faults.release()
        with pytest.raises(RedisConnectionError):
            await job
        assert proxy.cuts == 1
        await asyncio.wait_for(runtime.settle(), 15)  # the outcome's own task outlived the job
        sent = {m["channel"] for m in hub.messages()}
        statuses = await statuses_of(hub)
        assert {ch for ch, steps in statuses.items() if steps[-1] == "accepted"} == sent
        assert all(steps == ["sending", "accepted"] for steps in statuses.values()), statuses  # written once
        outcome = await runtime.process("default", event)  # the job's next try sends only what was left
    assert set(outcome.messages.values()) == {"accepted"}
    assert sorted(m["channel"] for m in hub.messages()) == ["push", "sms"]  # arriving_soon's channels, once
    await hub.run_worker()
    # What follows an outcome happened too, once: upstream heard of every message.
    told = sorted(w["data"]["channel"] for w in hub.receiver.of_type("message.status"))
    assert told == ["push", "sms"]


@contextlib.asynccontextmanager
async def a_sent_email(hub: Hub) -> AsyncIterator[tuple[HubStore, MessageRecord, dict[str, str], aioredis.Redis]]:
    """An e-mail sent for an ``order_confirmed`` event: the store, its record, its stored fields
    (not the API's view, which masks the address), a client."""
    await hub.post_event(make_event("order_confirmed"))
    await hub.run_worker()
    listed = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    mail_id = next(m["id"] for m in listed["messages"] if m["channel"] == "email")
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        store = HubStore(r, hub.settings)
        mail = await store.message_fields(mail_id)
        yield store, MessageRecord.from_fields(mail), mail, r
    finally:
        await r.aclose()


async def test_an_outcome_is_recorded_only_under_its_own_claim(hub: Hub) -> None:
    async with a_sent_email(hub) as (store, record, _, r):
        key = f"hub:msg:{record.id}"
        await r.hset(key, mapping={"status": "transient"})
        assert await store.claim(record, token="t1", allowed={"transient"}) == CLAIMED
        assert await store.settle(record.id, "t2", "accepted", at="2026-01-01T00:00:00.000+00:00") == "sending"
        at = "2026-01-01T00:00:01.000+00:00"
        before = await r.llen(f"{key}:history")
        assert await store.settle(record.id, "t1", "accepted", at=at, provider_id="p-1") == "done"
        assert await store.settle(record.id, "t1", "accepted", at=at, provider_id="p-1") == "done"  # asked again
        added = [json.loads(h)["status"] for h in await r.lrange(f"{key}:history", before, -1)]
        assert added == ["accepted"]  # written once
        await r.hset(key, mapping={"status": "delivered", "updated_at": "2026-01-01T00:00:02.000+00:00"})
        # A write whose answer was lost, asked again after a callback moved the message on: untouched.
        assert await store.settle(record.id, "t1", "accepted", at=at, provider_id="p-1") == "delivered"
        assert await r.hget(key, "status") == "delivered"


async def test_a_claim_is_given_back_only_by_its_own_token_and_only_while_sending(hub: Hub) -> None:
    async with a_sent_email(hub) as (store, record, mail, r):
        assert not await store.release(record, "t1", "x", "{}", 1)  # accepted: not sending, nothing changes
        await r.hset(f"hub:msg:{record.id}", mapping={"status": "transient"})
        assert await store.claim(record, token="t1", allowed={"transient"}) == CLAIMED
        assert await store.claim(record, token="t1", allowed={"transient"}) == CLAIMED  # same handler asks again
        assert await store.claim(record, token="t2", allowed={"transient"}) == Found("sending")
        assert not await store.release(record, "t2", "not mine", "{}", 1)
        assert await store.release(record, "t1", "given back", "{}", 1)
        fields = await r.hgetall(f"hub:msg:{record.id}")
        assert fields["status"] == "transient"  # back to what it was, in its index for the sweeper
        assert "claim" not in fields and "prior" not in fields
        assert await r.zscore("hub:msgs:status:transient", record.id) is not None
        assert not await store.release(record, "t1", "twice", "{}", 1)
        assert await store.claim(record, token="t3", allowed=FRESH) == Found("transient")  # an event's own job may not
        # A new message given back becomes a retry due now, with the job payload the sweeper needs.
        fresh = MessageRecord.from_fields({**mail, "id": "m_fresh"})
        assert await store.claim(fresh, token="t4", allowed=FRESH) == CLAIMED
        assert await store.release(fresh, "t4", "given back", '{"job": 1}', 1)
        fields = await r.hgetall("hub:msg:m_fresh")
        assert (fields["status"], fields["job"], fields["attempts"]) == ("transient", '{"job": 1}', "0")
        assert await r.zscore("hub:msgs:status:transient", "m_fresh") is not None

"""hub.client against the running hub: retries through a flaky loopback proxy, errors, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from hub.client import HubClient, HubRequestError, HubUnavailable, retry_after_seconds, verify_webhook
from hub.signing import signature_header
from tests.conftest import API_KEY, WEBHOOK_SECRET, Hub, reserve_port
from tests.events import make_event


class FlakyProxy:
    """Sits between the client and the hub: answers ``fail_with`` to the first ``failures``
    requests (after forwarding them when ``forward_failed``, as if the hub's answer were lost),
    then forwards. Records the event ids of every request it gets."""

    def __init__(self, target: str, *, failures: int = 0, fail_with: int = 503, retry_after: str | None = "0") -> None:
        self.target = target
        self.failures = failures
        self.fail_with = fail_with
        self.retry_after = retry_after
        self.forward_failed = False
        self.seen: list[list[str]] = []
        self.app = web.Application()
        self.app.router.add_post("/{path:.*}", self._handle)
        self.runner: web.AppRunner | None = None

    async def start(self, sock: socket.socket) -> str:
        """Serve on ``sock`` (from ``reserve_port``)."""
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.target + request.path, data=body, headers=headers) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body)
        events = payload["events"] if isinstance(payload, dict) and "events" in payload else [payload]
        self.seen.append([e.get("event_id") for e in events])
        if len(self.seen) <= self.failures:
            if self.forward_failed:
                await self._forward(request, body)
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return web.json_response(
                {"error": {"code": "unavailable", "message": "try later"}}, status=self.fail_with, headers=headers
            )
        return await self._forward(request, body)


@pytest.fixture
async def proxy(hub: Hub) -> AsyncIterator[tuple[FlakyProxy, str]]:
    flaky = FlakyProxy(hub.base)
    url = await flaky.start(reserve_port())
    yield flaky, url
    await flaky.stop()


async def event_records(hub: Hub, source: str = "default") -> list[str]:
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        return sorted(await client.keys(f"hub:event:{source}:*"))
    finally:
        await client.aclose()


async def test_post_event_and_batch_reach_the_hub(hub: Hub) -> None:
    async with HubClient(hub.base, API_KEY) as client:
        event = make_event()
        assert await client.post_event(event) == {"event_id": event["event_id"], "status": "accepted"}
        assert (await client.post_event(event))["status"] == "duplicate"
        no_id = make_event()
        del no_id["event_id"]
        given = await client.post_event(no_id)
        assert given["status"] == "accepted" and given["event_id"].startswith("evt-")
        batch = await client.post_events([make_event(), make_event()])
        assert batch["summary"] == {"accepted": 2, "duplicate": 0, "rejected": 0}
    assert len(await event_records(hub)) == 4


async def test_failed_tries_are_retried_with_the_same_event_ids(hub: Hub, proxy: tuple[FlakyProxy, str]) -> None:
    flaky, url = proxy
    flaky.failures = 2
    event = make_event()
    async with HubClient(url, API_KEY, backoff=0.01) as client:
        assert (await client.post_event(event))["status"] == "accepted"
    assert flaky.seen == [[event["event_id"]]] * 3

    # The hub took the batch but its answer was lost: the retry carries the same ids, and the hub
    # says duplicate instead of queueing the events again.
    flaky.seen, flaky.failures, flaky.forward_failed, flaky.fail_with = [], 1, True, 502
    batch = [make_event(), make_event()]
    del batch[1]["event_id"]  # given one by the client, before the first try
    async with HubClient(url, API_KEY, backoff=0.01) as client:
        answer = await client.post_events(batch)
    assert [r["status"] for r in answer["results"]] == ["duplicate", "duplicate"]
    assert len(flaky.seen) == 2 and flaky.seen[0] == flaky.seen[1] and flaky.seen[0][0] == batch[0]["event_id"]
    assert len(await event_records(hub)) == 3  # each event registered (and queued) once


async def test_retry_after_is_honoured(hub: Hub, proxy: tuple[FlakyProxy, str]) -> None:
    flaky, url = proxy
    flaky.failures, flaky.fail_with, flaky.retry_after = 1, 429, "1"
    started = time.monotonic()
    async with HubClient(url, API_KEY, backoff=0.01) as client:
        assert (await client.post_event(make_event()))["status"] == "accepted"
    assert time.monotonic() - started >= 0.95
    assert len(flaky.seen) == 2
    # An HTTP date is whole seconds: measured against an injected clock, not the wall clock, so
    # the answer is exact (a date in the past waits nothing).
    now = 1_700_000_000.0
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 10))
    assert retry_after_seconds(http_date, now=now) == 10.0
    assert retry_after_seconds(http_date, now=now + 0.25) == 9.75
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None


async def test_a_hub_that_comes_up_late_is_reached(hub: Hub) -> None:
    reserved = reserve_port()
    port = reserved.getsockname()[1]
    late = FlakyProxy(hub.base)
    # The hub comes up once the client has failed to connect (seen through aiohttp's request
    # tracing), not after a guessed delay: the first try is certain to have found nothing.
    refused = asyncio.Event()

    async def on_request_exception(*_: Any) -> None:
        refused.set()

    tracing = aiohttp.TraceConfig()
    tracing.on_request_exception.append(on_request_exception)

    async def start_late() -> None:
        await refused.wait()
        await late.start(reserved)

    starting = asyncio.create_task(start_late())
    try:
        async with (
            aiohttp.ClientSession(trace_configs=[tracing]) as session,
            HubClient(f"http://127.0.0.1:{port}", API_KEY, backoff=0.1, max_attempts=10, session=session) as client,
        ):
            assert (await client.post_event(make_event()))["status"] == "accepted"
        assert refused.is_set() and len(late.seen) == 1  # the earlier tries never connected
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await late.stop()
        reserved.close()  # closed with the server already, unless it never started


async def test_giving_up_and_client_errors(hub: Hub, proxy: tuple[FlakyProxy, str]) -> None:
    flaky, url = proxy
    flaky.failures = 100
    async with HubClient(url, API_KEY, backoff=0.01, max_attempts=3) as client:
        with pytest.raises(HubUnavailable) as gave_up:
            await client.post_event(make_event())
    assert gave_up.value.attempts == 3 and gave_up.value.status == 503 and len(flaky.seen) == 3

    async with HubClient(hub.base, API_KEY) as client:
        with pytest.raises(HubRequestError) as invalid:
            await client.post_event(make_event(customer__phone="12345"))
        assert invalid.value.status == 422 and invalid.value.code == "validation_failed"
        assert "customer.phone" in invalid.value.fields and "customer.phone" in str(invalid.value)
        with pytest.raises(HubRequestError) as none_taken:
            await client.post_events([make_event(customer__email="ana@")])
        assert none_taken.value.status == 422 and "0.customer.email" in none_taken.value.fields
        partial = await client.post_events([make_event(), make_event(type="teleported")])
        assert partial["summary"] == {"accepted": 1, "duplicate": 0, "rejected": 1}
    async with HubClient(hub.base, "not-a-key") as client:
        with pytest.raises(HubRequestError) as refused:
            await client.post_event(make_event())
        assert refused.value.status == 401 and refused.value.code == "unauthorized"


async def test_verify_webhook_accepts_the_hubs_signature_only(hub: Hub) -> None:
    await hub.post_event(make_event())
    await hub.run_worker()
    assert hub.receiver.received, "the hub should have sent message.status webhooks"
    hook: dict[str, Any] = hub.receiver.received[0]
    raw: bytes = hook["raw"]
    header = hook["headers"]["Hub-Signature"]
    assert verify_webhook(WEBHOOK_SECRET, raw, header)
    assert verify_webhook(WEBHOOK_SECRET, raw.decode(), header)
    assert not verify_webhook("another-secret-0123456789", raw, header)
    assert not verify_webhook(WEBHOOK_SECRET, raw.replace(b'"type"', b'"tipe"'), header)
    assert not verify_webhook(WEBHOOK_SECRET, raw, None)
    assert not verify_webhook(WEBHOOK_SECRET, raw, "garbage")
    stale = signature_header(WEBHOOK_SECRET, raw, timestamp=int(time.time()) - 1000)
    assert not verify_webhook(WEBHOOK_SECRET, raw, stale)
    assert verify_webhook(WEBHOOK_SECRET, raw, stale, tolerance=2000)

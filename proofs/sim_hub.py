"""What ``hub simulate availability`` says to the hub, and what it hears back.

``SimHub`` posts events in batches and waits until the hub has processed them, asks
``POST /v1/availability/query``, reads and clears the sandbox's ledger, and texts the hub as a
customer's phone does (the sandbox's own ``TwilioWebhooks``: signed as Twilio signs).
``Receiver`` is the route planner's webhook endpoint, subscribed in the hub's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from hub import keys
from hub.config_sections import TwilioSettings
from hub.redis_server import free_port
from hub.sandbox._outbound import Outbound
from hub.sandbox.ledger import Ledger
from hub.sandbox.twilio_webhooks import TwilioWebhooks
from hub.signing import verify

from .common import BENCH_KEY, Stack

__all__ = ["ANSWER_WEBHOOKS", "HOOK_SECRET", "HubUnready", "Receiver", "SimHub"]

HOOK_SECRET = "simulation-subscriber-secret-01234"
# What the planner listens to: the answers to a ``scheduled`` question.
ANSWER_WEBHOOKS = ("delivery.confirmed", "delivery.instructions_updated", "delivery.reschedule_requested")
BATCH = 200


class HubUnready(RuntimeError):
    """The hub lacks what the simulation needs (an endpoint, a milestone): said plainly."""


class Receiver:
    """The planner's webhook endpoint: keeps the answers by delivery id, checking signatures."""

    def __init__(self) -> None:
        self.port = free_port()
        self.by_delivery: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.refused = 0
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def subscription(self) -> str:
        hook = {"url": f"http://127.0.0.1:{self.port}/hook", "secret": HOOK_SECRET, "events": list(ANSWER_WEBHOOKS)}
        return json.dumps([hook])

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify(HOOK_SECRET, request.headers.get("Hub-Signature", ""), raw):
            self.refused += 1
            return web.Response(status=400)
        body = json.loads(raw)
        data = body.get("data") or {}
        self.by_delivery[str(data.get("delivery_id"))].append((str(body.get("type")), data))
        self.arrived.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def wait_for(self, delivery_ids: Sequence[str], timeout: float) -> None:
        """Until every one of ``delivery_ids`` has had an answer webhook, or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while any(d not in self.by_delivery for d in delivery_ids):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class SimHub:
    """A hub of real processes (``proofs.common.start_stack``) as the simulation uses it."""

    def __init__(self, stack: Stack, redis_url: str) -> None:
        self.stack = stack
        self.base = f"http://127.0.0.1:{stack.api_port}"
        self.redis = Redis.from_url(redis_url, decode_responses=True)
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {BENCH_KEY}"})
        twilio = TwilioSettings()
        self.hub_number = twilio.from_number or ""
        self._outbound = Outbound(timeout=30.0)
        self.phones = TwilioWebhooks(
            account_sid=twilio.account_sid, auth_token=twilio.auth_token, ledger=Ledger(), outbound=self._outbound
        )
        self.phones.hub_url = self.base

    async def close(self) -> None:
        await self.http.close()
        await self._outbound.close()
        await self.redis.aclose()

    async def post_events(self, events: list[dict[str, Any]]) -> None:
        """Post ``events`` (in batches) and wait until the hub has processed every one."""
        for i in range(0, len(events), BATCH):
            chunk = events[i : i + BATCH]
            async with self.http.post(f"{self.base}/v1/events/batch", json=chunk) as resp:
                body = await resp.json()
                if resp.status != 202:
                    bad = [r for r in body.get("results", []) if r.get("status") not in ("accepted", "duplicate")]
                    raise HubUnready(f"the hub refused events ({resp.status}): {json.dumps(bad or body)[:600]}")
        await self.wait_processed([e["event_id"] for e in events])

    async def wait_processed(self, event_ids: Sequence[str], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(event_ids)
        while pending:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_id in pending:
                    pipe.hget(keys.event("default", event_id), "state")
                states = await pipe.execute()
            pending = [e for e, s in zip(pending, states, strict=True) if s != "done"]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} events not processed within {timeout:.0f} s, e.g. {pending[0]}")
            if pending:
                await asyncio.sleep(0.05)

    async def query(self, windows: dict[str, tuple[str, list[tuple[str, str]]]]) -> dict[str, list[float]]:
        """``POST /v1/availability/query``: key -> (customer id, windows) in, key -> p_home per window out."""
        out: dict[str, list[float]] = {}
        items = list(windows.items())
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            body = {
                "queries": [
                    {"customer_id": cid, "windows": [{"start": s, "end": e} for s, e in spans]}
                    for _, (cid, spans) in chunk
                ]
            }
            async with self.http.post(f"{self.base}/v1/availability/query", json=body) as resp:
                if resp.status != 200:
                    raise HubUnready(f"POST /v1/availability/query answered {resp.status}: {(await resp.text())[:300]}")
                results = (await resp.json())["results"]
            for (key, _), result in zip(chunk, results, strict=True):
                out[key] = [float(w["p_home"]) for w in result["windows"]]
        return out

    async def ledger(self, *, clear: bool) -> list[dict[str, Any]]:
        """What the sandbox providers took since the last clear (every channel)."""
        async with self.http.get(f"{self.stack.origin}/messages") as resp:
            entries: list[dict[str, Any]] = await resp.json()
        if clear:
            async with self.http.delete(f"{self.stack.origin}/messages") as resp:
                await resp.read()
        return entries

    async def text(self, phone: str, body: str) -> int:
        """A customer's SMS to the hub, signed like Twilio's; the number of texts the hub answered with."""
        result = await self.phones.simulate_inbound(phone, self.hub_number, body)
        if "error" in result or int(result.get("status", 500)) >= 300:
            raise RuntimeError(f"the hub did not take a reply: {result}")
        return len(result.get("replies") or [])

    async def stats(self) -> dict[str, Any] | None:
        """``GET /v1/stats`` over the run, when the hub has it (a cross-check of the counts)."""
        async with self.http.get(f"{self.base}/v1/stats", params={"granularity": "day"}) as resp:
            if resp.status != 200:
                return None
            stats: dict[str, Any] = await resp.json()
            return stats

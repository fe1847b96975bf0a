"""Shared fixtures: a private real redis-server, the sandbox providers and the hub itself.

- ``redis_server`` (session): one redis-server on a free port, no persistence.
- ``redis_url``: flushes that server before each test.
- ``hub``: the sandbox fakes (Twilio, FCM on a real port; SMTP sink), the API on a real port
  (signatures and callbacks need real URLs), an HTTP client with the API key, and
  ``hub.run_worker()`` to drain the queue with a burst-mode arq worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from arq.connections import RedisSettings, create_pool

from hub.api import create_app
from hub.cli import main as cli_main
from hub.config import Settings, load_settings
from hub.jobs import job_deserializer, job_serializer
from hub.pipeline import Runtime
from hub.providers import build_channels
from hub.redis_server import EmbeddedRedis
from hub.sandbox import Sandbox
from hub.worker import create_webhook_worker, create_worker, drain

# Every provider the tests talk to is a loopback fake over plain HTTP, so no test needs a CA
# bundle; yet httpx (under firebase-admin) parses one for each client it builds, three per push
# channel, about 0.1 s each. An empty CA directory (read lazily, by httpx's own SSL_CERT_DIR
# setting) saves that; TLS to a real host would fail to verify, as it should in tests.
os.environ.pop("SSL_CERT_FILE", None)
os.environ["SSL_CERT_DIR"] = tempfile.mkdtemp(prefix="hub-tests-no-ca-")

# Property tests explore the same examples on every run (no database, derived from the test's
# own code), so a submission never fails by the luck of a draw; `HYPOTHESIS_PROFILE=explore`
# searches afresh, to look for new counterexamples on purpose.
hypothesis.settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis.settings.register_profile("explore", max_examples=1000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

API_KEY = "test-key-0123456789"
ADMIN_KEY = "test-admin-key-0123456789"
# The policy clock of the hub fixture: a weekday morning in Berlin, shortly after the sample
# events (tests/events.py) occurred, so none is in quiet hours or expired.
TEST_NOW = datetime.fromisoformat("2026-11-24T08:30:00+01:00").timestamp()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    import redis

    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    return redis_server.url


def make_settings(redis_url: str, api_port: int, sandbox_port: int, smtp_port: int, **overrides: Any) -> Settings:
    origin = f"http://127.0.0.1:{sandbox_port}/sandbox"
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "api_key": API_KEY,
        "admin_api_key": ADMIN_KEY,
        "secret_key": "test-secret",
        "public_url": f"http://127.0.0.1:{api_port}",
        "twilio.base_url": f"{origin}/twilio",
        "fcm.base_url": f"{origin}/fcm",
        "smtp.port": smtp_port,
        "worker.retry_base_delay": 0.05,
        "worker.job_timeout": 10,
        "ops.shutdown_grace_seconds": 5,
        "webhooks.retry_base_delay": 0.05,
        "webhooks.retry_max_delay": 0.2,
    }
    values.update(overrides)
    return load_settings(ROOT / "config.yaml", environ={}, **values)


WEBHOOK_SECRET = "receiver-secret-0123456789"


class Receiver:
    """An upstream system's webhook endpoint on loopback: records what arrives, can fail on cue."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0  # answer 500 to this many requests first
        self.always_fail = False
        self.attempts = 0
        self.gate: asyncio.Event | None = None  # when set: every request waits for it to open
        self.arrived = asyncio.Event()  # a request came
        self.app = web.Application()
        self.app.router.add_post("/hooks", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        body = await request.read()
        if self.always_fail or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            return web.Response(status=500, text="receiver down")
        self.received.append({"headers": dict(request.headers), "raw": body, "json": json.loads(body)})
        return web.Response(status=204)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [r["json"] for r in self.received if r["json"]["type"] == event_type]


class Hub:
    """A running hub for one test."""

    def __init__(self, settings: Settings, sandbox: Sandbox, http: aiohttp.ClientSession, receiver: Receiver) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.http = http
        self.receiver = receiver
        self.base = settings.public_url
        self.sandbox_url = ""
        # The delivery policy's clock (quiet hours, expiry, limits): fixed, near the sample events.
        self.now = TEST_NOW

    def clock(self) -> float:
        return self.now

    async def fast_forward(self, seconds: float) -> None:
        """Move the policy clock on; messages held until then (jobs ``msg:{id}:{due_ms}``) become
        runnable at once."""
        import redis.asyncio as aioredis

        self.now += seconds
        client = aioredis.Redis.from_url(str(self.settings.redis_url), decode_responses=True)
        try:
            queue = self.settings.worker.queue_name
            real_now_ms = int(time.time() * 1000)
            for job_id in await client.zrange(queue, 0, -1):
                parts = job_id.split(":")
                if parts[0] == "msg" and parts[2].isdigit() and int(parts[2]) <= self.now * 1000:
                    await client.zadd(queue, {job_id: real_now_ms})
        finally:
            await client.aclose()

    @property
    def ledger(self) -> Any:
        return self.sandbox.ledger

    def messages(self, **filters: str) -> list[dict[str, Any]]:
        entries = [e.to_dict() for e in self.sandbox.ledger.entries()]
        return [
            e
            for e in entries
            if all(e.get(k) == v for k, v in filters.items())
            and (e.get("meta") or {}).get("direction") not in ("inbound", "reply")
        ]

    async def request(
        self, method: str, path: str, *, key: str | None = API_KEY, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return await self.http.request(method, self.base + path, headers=headers, **kwargs)

    async def post_event(self, event: dict[str, Any], **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", "/v1/events", json=event, **kwargs)

    async def run_worker(self, **overrides: Any) -> None:
        """Process everything due (events, messages, then webhook deliveries); jobs held for
        later (quiet hours, collapsing, limits) stay queued until ``fast_forward``."""
        settings = self.settings.replace(**overrides) if overrides else self.settings
        for worker in (
            create_worker(settings, handle_signals=False, clock=self.clock),
            create_webhook_worker(settings, handle_signals=False),
        ):
            await drain(worker)
        await asyncio.sleep(0)

    async def text_hub(self, from_: str, body: str) -> dict[str, Any]:
        """An SMS from a phone to the hub, through the sandbox (signed like Twilio)."""
        resp = await self.http.post(
            self.sandbox_url + "/sms/inbound",
            json={"from": from_, "to": self.settings.twilio.from_number, "body": body},
        )
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


def reserve_port() -> socket.socket:
    """A loopback socket bound to a free port, not yet listening: connections to it are refused
    until a server starts on it, and no other process can take the port meanwhile (a port number
    looked up, then bound later, can be)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def hub(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    sandbox_marker = request.node.get_closest_marker("sandbox")
    sandbox_options = {"status_callbacks": False, **(sandbox_marker.kwargs if sandbox_marker else {})}
    sandbox = Sandbox(**sandbox_options)
    receiver = Receiver()
    receiver_runner = web.AppRunner(receiver.app)
    await receiver_runner.setup()
    receiver_sock = reserve_port()
    receiver_port = receiver_sock.getsockname()[1]
    await web.SockSite(receiver_runner, receiver_sock).start()
    overrides.setdefault(
        "webhooks.subscriptions", [{"url": f"http://127.0.0.1:{receiver_port}/hooks", "secret": WEBHOOK_SECRET}]
    )
    sandbox_app = web.Application()
    sandbox.add_routes(sandbox_app)
    sandbox_runner = web.AppRunner(sandbox_app)
    await sandbox_runner.setup()
    sandbox_sock = reserve_port()
    sandbox_port = sandbox_sock.getsockname()[1]
    await web.SockSite(sandbox_runner, sandbox_sock).start()
    smtp_port = await sandbox.start_smtp()
    api_sock = reserve_port()
    api_port = api_sock.getsockname()[1]
    settings = make_settings(redis_url, api_port, sandbox_port, smtp_port, **overrides)
    api_runner = web.AppRunner(create_app(settings))
    await api_runner.setup()
    await web.SockSite(api_runner, api_sock).start()
    sandbox.hub_url = settings.public_url
    sandbox.sms_number = settings.twilio.from_number
    async with aiohttp.ClientSession() as http:
        hub = Hub(settings, sandbox, http, receiver)
        hub.sandbox_url = f"http://127.0.0.1:{sandbox_port}/sandbox"
        yield hub
    await api_runner.cleanup()
    await sandbox.close()
    await sandbox_runner.cleanup()
    await receiver_runner.cleanup()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): settings overrides for the hub fixture")
    config.addinivalue_line("markers", "sandbox(**options): options for the hub fixture's Sandbox")
    logging.getLogger("arq").setLevel(logging.WARNING)


async def cli(argv: list[str]) -> int:
    """``hub ...`` as a user runs it. The CLI starts its own event loop: run it in a thread, off
    the test's loop."""
    return await asyncio.to_thread(cli_main, argv)


@pytest.fixture
def hub_env(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub fixture, with the environment the CLI reads pointed at it."""
    monkeypatch.setenv("HUB_REDIS_URL", str(hub.settings.redis_url))
    monkeypatch.setenv("HUB_SECRET_KEY", "test-secret")
    return hub


@contextlib.asynccontextmanager
async def a_runtime(hub: Hub, *, port: int | None = None) -> AsyncIterator[Runtime]:
    """The worker's runtime, outside a worker (for the sweeper, the sending lease, a single
    event); ``port``: reach Redis through that local port instead (a fault-injecting proxy)."""
    url = str(hub.settings.redis_url)
    pool = await create_pool(
        RedisSettings.from_dsn(url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        default_queue_name=hub.settings.worker.queue_name,
    )
    if port is None:
        r = aioredis.Redis.from_url(url, decode_responses=True)
    else:
        r = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    runtime = Runtime(hub.settings, r, build_channels(hub.settings), enqueue=pool.enqueue_job, clock=hub.clock)
    try:
        yield runtime
    finally:
        await runtime.close()
        await r.aclose()
        await pool.aclose()

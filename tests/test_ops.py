"""Operations: Prometheus metrics, /readyz, structured logs and graceful shutdown, against the real
API, a real Redis, the sandbox providers and real ``hub api`` / ``hub worker`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from typing import IO, Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hub import keys
from hub.api import create_app
from hub.logs import IdFormatter, JsonFormatter, resolve_format
from hub.redis_server import free_port
from tests.conftest import API_KEY, ROOT, Hub, make_settings, reserve_port
from tests.events import due_now, make_event
from tests.test_restart import all_done, statuses, wait_for, worker_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(hub: Hub) -> Samples:
    resp = await hub.request("GET", "/metrics", key=None)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(await resp.text())


def shipped(i: int, tag: str) -> dict[str, Any]:
    return make_event(
        "shipped",
        event_id=f"{tag}-{i}",
        delivery__id=f"D-{tag}-{i}",
        customer={"id": f"C-{tag}-{i}", "email": f"{tag}{i}@example.com", "push_tokens": [f"tok-{tag}-{i}"]},
    )


async def heartbeat(hub: Hub, name: str, at: float) -> None:
    r = aioredis.Redis.from_url(str(hub.settings.redis_url))
    try:
        await r.zadd(keys.WORKER_HEARTBEAT, {name: at})
    finally:
        await r.aclose()


# -- metrics -----------------------------------------------------------------------------------
async def test_metrics_count_events_messages_provider_calls_and_webhooks(hub: Hub) -> None:
    before = await scrape(hub)
    events = [shipped(i, "m1") for i in range(3)]
    for event in events:
        assert (await hub.post_event(event)).status == 202
    assert (await hub.post_event(events[0])).status == 202  # a duplicate
    assert (await hub.post_event({**events[1], "type": "in_transit"})).status == 409  # a conflict
    assert (await hub.post_event({**make_event("shipped"), "occurred_at": "yesterday"})).status == 422
    await hub.run_worker()
    after = await scrape(hub)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    default = {"type": "shipped", "source": "default"}
    assert delta("hub_events_accepted_total", **default) == 3
    assert delta("hub_events_duplicate_total", **default) == 1
    assert delta("hub_events_rejected_total", **default, reason="invalid") == 1
    assert delta("hub_events_rejected_total", type="in_transit", source="default", reason="conflict") == 1
    for channel in ("email", "push"):
        assert delta("hub_messages_total", channel=channel, status="sending") == 3
        assert delta("hub_messages_total", channel=channel, status="accepted") == 3
        assert delta("hub_provider_send_seconds_count", channel=channel, outcome="accepted") == 3
    assert delta("hub_messages_total", channel="sms", status="accepted") == 0
    # Each accepted message is reported upstream as a message.status webhook, then delivered.
    assert delta("hub_webhooks_emitted_total", type="message.status") == 6
    assert delta("hub_webhook_deliveries_total", outcome="delivered") == 6
    assert delta("hub_webhook_post_seconds_count") == 6
    # Scrape-time gauges: Redis reached, both queues read, nothing left due.
    assert value(after, "hub_redis_up") == 1
    assert value(after, "hub_queue_depth", queue="events") == 0
    assert ("hub_queue_depth", frozenset({("queue", "webhooks")})) in after


@pytest.mark.settings(**{"worker.max_tries": 2})
async def test_provider_failures_count_retries_and_dead_letters(hub: Hub) -> None:
    before = await scrape(hub)
    hub.sandbox.faults.set("twilio", "500")  # every SMS fails, transiently
    hub.receiver.fail_next = 1  # and the first webhook delivery too
    event = make_event("arriving_soon", event_id="fail-1", delivery__id="D-fail-1", data={"minutes": 10})
    event["customer"] = {"id": "C-fail-1", "phone": "+4915122223333"}
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    after = await scrape(hub)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hub_provider_send_seconds_count", channel="sms", outcome="transient") == 2
    assert delta("hub_messages_total", channel="sms", status="transient") == 1
    assert delta("hub_message_retries_total", channel="sms") == 1
    assert delta("hub_messages_total", channel="sms", status="dead") == 1
    assert delta("hub_dead_letters_total", kind="message") == 1
    assert delta("hub_webhook_deliveries_total", outcome="retry") == 1
    assert delta("hub_webhook_deliveries_total", outcome="delivered") >= 1


@pytest.mark.settings(**{"relay.pool": ["+4915700000100", "+4915700000101"]})
async def test_relay_sessions_calls_and_texts_are_counted(hub: Hub) -> None:
    before = await scrape(hub)
    driver, customer = "+4915700000001", "+4915112345678"
    resp = await hub.request(
        "POST", "/v1/deliveries/D-relay-1/relay", json={"driver_phone": driver, "customer_phone": customer}
    )
    assert resp.status == 201, await resp.text()
    proxy = (await resp.json())["participants"]["customer"]["proxy_number"]
    for caller in (customer, "+4917000000009"):  # the customer is connected, a stranger refused
        await hub.http.post(hub.sandbox_url + "/voice/inbound", json={"from": caller, "to": proxy})
    await hub.http.post(hub.sandbox_url + "/sms/inbound", json={"from": "+4917000000009", "to": proxy, "body": "hi"})
    assert (await hub.request("DELETE", "/v1/deliveries/D-relay-1/relay")).status == 204
    after = await scrape(hub)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hub_relay_sessions_opened_total") == 1
    assert delta("hub_relay_sessions_closed_total") == 1
    assert delta("hub_relay_calls_total", outcome="connecting") == 1
    assert delta("hub_relay_calls_total", outcome="refused") == 1
    assert delta("hub_relay_texts_total", outcome="refused") == 1


@pytest.mark.settings(**{"ops.metrics": False})
async def test_metrics_endpoint_can_be_turned_off(hub: Hub) -> None:
    assert (await hub.request("GET", "/metrics", key=None)).status == 404


# -- readiness ---------------------------------------------------------------------------------
async def test_readyz_wants_a_recent_heartbeat_and_a_queue_that_moves(hub: Hub) -> None:
    resp = await hub.request("GET", "/readyz", key=None)
    assert resp.status == 503
    assert (await resp.json())["problems"] == ["no worker heartbeat in the last 30 s"]

    await heartbeat(hub, "host:1:stale", time.time() - 45)  # too old
    await heartbeat(hub, "webhooks:host:1:x", time.time())  # the webhook worker's beat does not count
    assert (await hub.request("GET", "/readyz", key=None)).status == 503
    await heartbeat(hub, "host:2:fresh", time.time())
    resp = await hub.request("GET", "/readyz", key=None)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["checks"]["workers"] == 1

    r = aioredis.Redis.from_url(str(hub.settings.redis_url))
    queue = hub.settings.worker.queue_name
    now_ms = int(time.time() * 1000)
    try:
        await r.zadd(queue, {"held-until-tomorrow": now_ms + 86_400_000})  # not due: no problem
        assert (await hub.request("GET", "/readyz", key=None)).status == 200
        await r.zadd(queue, {"stuck": now_ms - 300_000})  # due 5 minutes ago, nobody took it
    finally:
        await r.aclose()
    resp = await hub.request("GET", "/readyz", key=None)
    assert resp.status == 503
    [problem] = (await resp.json())["problems"]
    assert "event queue" in problem and "limit 120 s" in problem
    samples = await scrape(hub)
    assert value(samples, "hub_ready") == 0
    assert value(samples, "hub_queue_depth", queue="events") == 1
    assert value(samples, "hub_queue_scheduled", queue="events") == 1
    assert value(samples, "hub_queue_oldest_age_seconds", queue="events") >= 300
    assert value(samples, "hub_workers_alive") == 1


async def test_readyz_and_metrics_report_an_unreachable_redis(redis_url: str) -> None:
    nobody = reserve_port()  # bound, never listening: nothing answers there, whatever else runs
    api = reserve_port()
    dead = f"redis://127.0.0.1:{nobody.getsockname()[1]}/0"
    port = api.getsockname()[1]
    settings = make_settings(dead, port, port, port)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.SockSite(runner, api).start()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            assert (await http.get(f"{base}/healthz")).status == 200  # alive all the same
            resp = await http.get(f"{base}/readyz")
            assert resp.status == 503
            body = await resp.json()
            assert body["problems"] == ["redis unreachable"]
            assert body["checks"]["redis"] == "unreachable"
            resp = await http.get(f"{base}/metrics")
            assert resp.status == 200
            samples = parse(await resp.text())
            assert value(samples, "hub_redis_up") == 0
            assert value(samples, "hub_ready") == 0
            assert not any(name == "hub_queue_depth" for name, _ in samples)  # unknown, not zero
    finally:
        await runner.cleanup()
        nobody.close()


# -- logs --------------------------------------------------------------------------------------
def test_json_log_lines_carry_ids_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("hub.test").makeRecord(
            "hub.test", logging.ERROR, __file__, 1, "event %s failed", ("evt-1",), sys.exc_info()
        )
    record.event_id, record.delivery_id, record.source = "evt-1", "D-1", "shop"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "hub.test"
    assert entry["message"] == "event evt-1 failed"
    assert (entry["event_id"], entry["delivery_id"], entry["source"]) == ("evt-1", "D-1", "shop")
    assert "message_id" not in entry
    assert "ValueError: boom" in entry["exception"]
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    console = IdFormatter("%(levelname)s %(message)s").format(record)
    assert console.startswith("ERROR event evt-1 failed") and "event_id=evt-1" in console


def test_auto_log_format_is_console_on_a_terminal_and_json_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"
    with pytest.raises(ValueError):
        resolve_format("xml")


# -- processes: graceful shutdown ---------------------------------------------------------------
def api_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "HUB_CONFIG": str(ROOT / "config.yaml"),
            "HUB_REDIS_URL": redis_url,
            "HUB_API_KEY": API_KEY,
            "HUB_SECRET_KEY": "test-secret",
            "HUB_TWILIO__AUTH_TOKEN": "test-auth-token",
            **extra,
        }
    )
    return env


async def wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def json_lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


async def blocked_clients(redis_url: str) -> int:
    """Redis clients waiting on a command: here, writes held by ``CLIENT PAUSE ... WRITE``."""
    r = aioredis.Redis.from_url(redis_url)
    try:
        return int((await r.info("clients"))["blocked_clients"])
    finally:
        await r.aclose()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


@pytest.mark.slow
async def test_api_finishes_an_in_flight_request_on_sigterm_then_exits(redis_url: str) -> None:
    port = free_port()
    grace = 60  # far longer than the test needs: exiting sooner shows it did not wait out the grace
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "api", "--port", str(port)],
        env=api_env(redis_url, HUB_OPS__SHUTDOWN_GRACE_SECONDS=str(grace)),
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    r = aioredis.Redis.from_url(redis_url)
    try:
        await wait_listening(port)
        body = json.dumps(make_event("shipped", event_id="inflight-1")).encode()
        head = (
            f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        # Redis holds every write until the test lets go: the request is in flight, its handler
        # waiting to register the event (Redis counts it as a blocked client), when the API is
        # told to stop, and stays so until the API has stopped listening.
        await r.execute_command("CLIENT", "PAUSE", grace * 1000, "WRITE")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await writer.drain()

        async def held() -> bool:
            return await blocked_clients(redis_url) >= 1

        await wait_for(held, 30)
        proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: refused(port), 30)  # no longer accepting, the request still held
        assert proc.poll() is None
        await r.execute_command("CLIENT", "UNPAUSE")
        released = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
        assert b'"accepted"' in answer
        code = await asyncio.to_thread(proc.wait, grace)
        assert code == 0
        # It exits once the request is answered (well under a second, typically), not when the
        # grace runs out.
        assert time.monotonic() - released < grace / 2
    finally:
        await r.execute_command("CLIENT", "UNPAUSE")
        await r.aclose()
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    lines = json_lines(stderr)  # stderr is a pipe: auto means JSON
    assert any(line["message"] == f"API listening on 127.0.0.1:{port}" for line in lines)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await r.hget("hub:event:default:inflight-1", "state") is not None  # registered and queued
    finally:
        await r.aclose()


class StderrLines:
    """A process's stderr, read line by line as it comes (in a thread, so the pipe never fills
    and the test can wait for a line while the process runs)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                self.lines.append(line)

    async def seen(self, prefix: str) -> bool:
        """Whether a JSON log line whose message starts with ``prefix`` has come."""
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                if str(json.loads(line).get("message", "")).startswith(prefix):
                    return True
        return False

    def json(self) -> list[dict[str, Any]]:
        self._thread.join(30)
        return json_lines(b"".join(self.lines))


@pytest.mark.slow
@pytest.mark.sandbox(fault_timeout=300.0)
async def test_worker_sigterm_lets_in_flight_sends_finish_and_a_restart_sends_each_message_once(hub: Hub) -> None:
    """Provider calls held by the sandbox are in flight at SIGTERM: the worker takes no new jobs,
    waits for them while they are held, lets them finish once released (a 504, so each message is
    scheduled for a retry) and exits then, well within the grace period; the next worker sends
    everything, each message exactly once, none in doubt."""
    n = 12
    grace = 60
    events = due_now(n, "term", 20000000)
    assert (await hub.request("POST", "/v1/events/batch", json=events)).status == 202
    hub.sandbox.faults.set("twilio", "timeout")  # held until the test releases them
    metrics_port = free_port()
    env = worker_env(
        hub,
        HUB_LOG_LEVEL="INFO",
        HUB_OPS__SHUTDOWN_GRACE_SECONDS=str(grace),
        HUB_OPS__WORKER_METRICS_PORT=str(metrics_port),
        # The held calls end when released, never by the worker's own timeouts.
        HUB_TWILIO__TIMEOUT="300",
        HUB_WORKER__JOB_TIMEOUT="300",
    )
    worker = subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    first = worker
    stderr = StderrLines(first)
    try:

        async def held() -> bool:
            return hub.sandbox.faults.triggered("twilio") >= 4  # max_jobs=4 events in flight

        await wait_for(held, 30)
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert resp.status == 200
            samples = parse(await resp.text())
        assert value(samples, "hub_messages_total", channel="sms", status="sending") >= 4
        worker.send_signal(signal.SIGTERM)
        await wait_for(lambda: stderr.seen("stopping: no new jobs"), 30)
        # Stopping, with nothing to do but wait for the held calls: it waits. (A worker that did
        # not wait would exit at once; a slow machine can only make it look more patient.)
        with pytest.raises(subprocess.TimeoutExpired):
            await asyncio.to_thread(worker.wait, 0.5)
        hub.sandbox.faults.clear("twilio")
        hub.sandbox.faults.release()  # the held calls end in a 504 now
        released = time.monotonic()
        code = await asyncio.to_thread(worker.wait, grace)
        stopped_in = time.monotonic() - released
        assert code == 0
        assert stopped_in < grace / 2, stopped_in  # it stopped when the calls ended, not at the grace
        first_run = stderr.json()
        assert not await all_done(str(hub.settings.redis_url), [e["event_id"] for e in events])

        worker = subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=worker_env(hub), cwd=ROOT)
        await wait_for(lambda: all_done(str(hub.settings.redis_url), [e["event_id"] for e in events]), 60)

        async def settled() -> bool:
            counts = await statuses(str(hub.settings.redis_url))
            return counts["accepted"] == 2 * n

        await wait_for(settled, 30)
    finally:
        for proc in {first, worker}:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)  # the first's stderr is read by StderrLines
    sent = Counter(m["to"] for m in hub.messages())
    assert len(sent) == 2 * n and max(sent.values()) == 1, sent
    counts = await statuses(str(hub.settings.redis_url))
    assert counts == {"accepted": 2 * n}, counts  # nothing unknown: no call was cut off
    stopping = [line for line in first_run if line["message"].startswith("stopping: no new jobs")]
    assert stopping and stopping[0]["level"] == "INFO"
    # Message lines carry their ids, and never a customer's number in full.
    sent_lines = [line for line in first_run if line["message"].startswith("message ")]
    assert sent_lines and all("message_id" in line and "event_id" in line for line in sent_lines)
    assert not any(e["customer"]["phone"] in json.dumps(first_run) for e in events)

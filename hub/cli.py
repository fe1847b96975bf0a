"""Command line: ``hub dev | api | worker | demo | bench``.

- ``hub dev``: everything in one process tree for trying the hub: a private Redis (unless
  ``HUB_REDIS_URL`` reaches one), the API and the sandbox providers on 127.0.0.1:PORT, an SMTP
  sink, and arq workers. ``--demo`` posts a sample route.
- ``hub api`` / ``hub worker``: the two halves for production, against ``HUB_REDIS_URL``.
- ``hub demo``: post the sample route to a running hub.
- ``hub bench``: the benchmark (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from aiohttp import web
from redis.exceptions import RedisError

from .config import ConfigError, Settings, load_settings
from .data_cli import add_data_commands, run_data_command
from .logs import setup_logging

__all__ = ["main"]

log = logging.getLogger("hub")


def _persistent_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _redis_reachable(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


# -- hub dev ---------------------------------------------------------------------------------
async def _dev(args: argparse.Namespace, settings: Settings) -> None:
    from .api import REDIS, create_app
    from .console import add_console_routes
    from .demo import run_demo, run_tag
    from .redis_server import EmbeddedRedis
    from .sandbox import Sandbox
    from .worker import create_webhook_worker, create_worker

    data_dir = Path(settings.data_dir)
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url or not _redis_reachable(redis_url):
        embedded = EmbeddedRedis(data_dir / "redis", appendonly=True).start()
        redis_url = embedded.url
    api_key = settings.api_key or os.environ.get("HUB_API_KEY") or "dev-" + secrets.token_urlsafe(12)
    origin = f"http://127.0.0.1:{args.port}"
    sandbox = Sandbox(
        twilio_account_sid=settings.twilio.account_sid,
        twilio_auth_token=settings.twilio.auth_token,
        fcm_project_id=settings.fcm.project_id,
        invalid_numbers=frozenset(settings.sandbox.invalid_numbers),
        unregistered_tokens=frozenset(settings.sandbox.unregistered_tokens),
        failing_numbers=settings.sandbox.failing_numbers,
        hub_url=origin,
    )
    sandbox.sms_number = settings.twilio.from_number
    sandbox.smtp.bouncing_addresses.update(a.lower() for a in settings.sandbox.bouncing_addresses)
    smtp_port = await sandbox.start_smtp("127.0.0.1", args.smtp_port or settings.sandbox.smtp_port)
    settings = settings.replace(
        **{
            "redis_url": redis_url,
            "api_key": api_key,
            "secret_key": settings.secret_key or _persistent_secret(data_dir / "secret_key"),
            "public_url": origin,
            "twilio.base_url": f"{origin}/sandbox/twilio",
            "fcm.base_url": f"{origin}/sandbox/fcm",
            "fcm.credentials_file": None,
            "smtp.host": "127.0.0.1",
            "smtp.port": smtp_port,
            "smtp.username": None,
            "smtp.password": None,
            "smtp.use_tls": False,
            "smtp.start_tls": False,
        }
    )

    def sandbox_routes(a: web.Application) -> None:
        sandbox.add_routes(a, "/sandbox")
        add_console_routes(a, settings, sandbox, REDIS)

    app = create_app(settings, extra_setup=sandbox_routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()

    worker = create_worker(settings, handle_signals=False)
    webhook_worker = create_webhook_worker(settings, handle_signals=False)
    worker_task = asyncio.gather(worker.async_run(), webhook_worker.async_run())
    children: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "HUB_REDIS_URL": redis_url,
        "HUB_API_KEY": api_key,
        "HUB_SECRET_KEY": str(settings.secret_key),
        "HUB_PUBLIC_URL": origin,
        "HUB_TWILIO__BASE_URL": settings.twilio.base_url,
        "HUB_FCM__BASE_URL": settings.fcm.base_url,
        "HUB_SMTP__PORT": str(smtp_port),
        "HUB_SMTP__HOST": "127.0.0.1",
    }
    for _ in range(max(0, args.workers - 1)):
        children.append(subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=env))

    print(
        f"""
  Delivery hub (dev) is running.

  API and sandbox   {origin}
  API key           {api_key}
  Redis             {redis_url}{"  (embedded, data in " + str(data_dir / "redis") + ")" if embedded else ""}
  SMTP sink         127.0.0.1:{smtp_port}
  Workers           {args.workers}

  Post a first event:
    curl -s -X POST {origin}/v1/events -H 'Authorization: Bearer {api_key}' \\
      -H 'Content-Type: application/json' -d @docs/examples/event.json
  See what every phone and inbox received (and reply as a customer):
    {origin}/sandbox           (JSON: curl -s {origin}/sandbox/messages)
  Post the next milestone of any delivery, play the demo, see the message log:
    {origin}/sandbox/console
  API reference, metrics, readiness:
    {origin}/docs   {origin}/metrics   {origin}/readyz
  Text the hub as a customer (e.g. reply 2 to a reschedule offer, or STOP):
    .venv/bin/hub sandbox sms --url {origin} --from +34612345678 --body 2
  Stop with Ctrl-C.
""",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo_task = None
    if args.demo:
        demo_task = asyncio.create_task(run_demo(origin, api_key, pause=args.demo_pause, run=run_tag()))
    try:
        await stop.wait()
    finally:
        print("\nshutting down…", flush=True)
        if demo_task:
            demo_task.cancel()
        for child in children:
            child.send_signal(signal.SIGTERM)
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
        webhook_worker.handle_sig_wait_for_completion(signal.SIGTERM)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(worker_task, settings.ops.shutdown_grace_seconds + 5)
        await worker.close()
        await webhook_worker.close()
        await runner.cleanup()
        await sandbox.close()
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(settings.ops.shutdown_grace_seconds + 5)
        if embedded:
            embedded.stop()


# -- production halves ------------------------------------------------------------------------
def _api(settings: Settings, args: argparse.Namespace) -> None:
    from .api import create_app

    host, port = args.host or settings.api.host, args.port or settings.api.port
    # On SIGTERM/SIGINT aiohttp stops listening, gives in-flight requests the grace period to
    # finish, then closes what is left (/readyz answers 503 "shutting down" meanwhile).
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        shutdown_timeout=settings.ops.shutdown_grace_seconds,
        print=lambda *_: log.info("API listening on %s:%d", host, port),
    )


def _worker(settings: Settings) -> None:
    from .metrics import serve_worker_metrics
    from .worker import create_webhook_worker, create_worker, run_workers

    if settings.ops.metrics and settings.ops.worker_metrics_port:
        # A daemon thread: it serves across the restarts below and ends with the process.
        serve_worker_metrics(settings.ops.worker_metrics_port)
        log.info("worker metrics on port %d", settings.ops.worker_metrics_port)

    async def both() -> None:
        await run_workers(
            [
                create_worker(settings, handle_signals=False),
                create_webhook_worker(settings, handle_signals=False),
            ]
        )

    # A worker outlives a Redis outage: arq stops when its connection is lost, so wait until Redis
    # answers again and start anew. Jobs that were running are taken over once their arq lease
    # ends; the message log's claims keep them from sending anything twice.
    while True:
        try:
            asyncio.run(both())
            return
        except (RedisError, OSError) as e:
            log.warning("worker stopped: Redis unreachable (%s); starting again when it answers", e)
            _wait_for_redis(str(settings.redis_url))


def _interrupt_on_sigterm() -> None:
    """SIGTERM as Ctrl-C, so a bench or chaos run stopped by a timeout still stops the processes
    it started (its ``finally`` blocks run)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _bench(args: argparse.Namespace) -> int:
    _interrupt_on_sigterm()
    from . import bench, bench_mix, bench_peak, bench_peer, bench_scale, bench_webhooks

    scenarios = {
        "peak": bench_peak.run_peak_bench,
        "mix": bench_mix.run_mix_bench,
        "relay": bench.run_relay_bench,
        "scale": bench_scale.run_scale_bench,
        "webhooks": bench_webhooks.run_webhooks_bench,
        "email-peer": bench_peer.run_peer_bench,
    }
    if args.scenario in scenarios:
        return scenarios[args.scenario](args)
    return bench.run_bench(args)


def _wait_for_redis(url: str, *, first: float = 0.2, most: float = 5.0) -> None:
    from redis import Redis

    delay = first
    while True:
        client = Redis.from_url(url, socket_connect_timeout=1)
        try:
            if client.ping():
                return
        except RedisError:
            pass
        finally:
            client.close()
        time.sleep(delay)
        delay = min(most, delay * 2)


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from redis.asyncio import Redis

    from . import keys
    from .webhooks import replay_webhooks

    if not settings.redis_url:
        print("set HUB_REDIS_URL", file=sys.stderr)
        return 2
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        ids = list(args.id)
        if args.dead:
            ids += await redis.zrange(keys.WEBHOOK_DEAD, 0, -1)
        if not ids:
            print("nothing to replay: give --id or --dead", file=sys.stderr)
            return 2
        queued = await replay_webhooks(redis, settings, ids)
        missing = sorted(set(ids) - set(queued))
        print(
            f"queued {len(queued)} webhook deliveries again"
            + (f"; unknown ids: {', '.join(missing)}" if missing else "")
        )
        return 0 if not missing else 1
    finally:
        await redis.aclose()


async def _sandbox_sms(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    to = args.to or settings.twilio.from_number or ""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{args.url.rstrip('/')}/sandbox/sms/inbound", json={"from": args.from_, "to": to, "body": args.body}
        ) as resp,
    ):
        body = await resp.json()
    if resp.status >= 400:
        print(f"error {resp.status}: {body}", file=sys.stderr)
        return 1
    replies = body.get("replies") or []
    print(f"hub answered {body.get('status')}: " + (" | ".join(replies) if replies else "(no reply)"))
    return 0


async def _sandbox_call(args: argparse.Namespace) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{args.url.rstrip('/')}/sandbox/voice/inbound", json={"from": args.from_, "to": args.to}) as resp,
    ):
        body = await resp.json()
    if resp.status >= 400 or "error" in body:
        print(f"error {resp.status}: {body}", file=sys.stderr)
        return 1
    if body.get("would_ring"):
        print(f"would ring {body['would_ring']}, showing caller id {body['caller_id']}")
    else:
        print(f"refused: {body.get('said') or '(no answer)'}")
    return 0


def _since_ms(raw: str | None) -> int:
    if not raw:
        return 0
    when = datetime.fromisoformat(raw)
    if when.tzinfo is None:
        raise ValueError("--since needs a UTC offset, e.g. 2026-11-24T08:00:00Z")
    return int(when.timestamp() * 1000)


async def _messages(settings: Settings, args: argparse.Namespace) -> int:
    from redis.asyncio import Redis

    from .dispatch import replay_messages
    from .masking import mask
    from .store import HubStore

    if not settings.redis_url:
        print("set HUB_REDIS_URL", file=sys.stderr)
        return 2
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    store = HubStore(redis, settings)
    try:
        if args.messages_command == "list":
            for m in await store.list_by_status(args.status, since_ms=_since_ms(args.since), limit=args.limit):
                reason = m.get("error") or (m["history"][-1].get("detail", "") if m["history"] else "")
                to = mask(m.get("channel", ""), m.get("to"))
                print(f"{m['id']}  {m.get('updated_at', '')}  {m.get('channel')} {to}  {m.get('milestone')}  {reason}")
            return 0
        ids = list(args.id)
        if args.since:
            ids += [m["id"] for m in await store.list_by_status("dead", since_ms=_since_ms(args.since), limit=100_000)]
        if not ids:
            print("nothing to replay: give --id or --since", file=sys.stderr)
            return 2
        queued = await replay_messages(redis, settings, list(dict.fromkeys(ids)))
        skipped = [i for i in ids if i not in set(queued)]
        print(
            f"queued {len(queued)} dead-lettered messages again"
            + (f"; not dead (sent, replayed already, or unknown): {', '.join(skipped)}" if skipped else "")
        )
        return 0
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub", description="Last-mile delivery notification hub")
    parser.add_argument("--config", help="path of config.yaml (default: HUB_CONFIG, else the one in the source tree)")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run everything locally with an embedded Redis and sandbox providers")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--smtp-port", type=int, default=0, help="SMTP sink port (default: a free port)")
    dev.add_argument("--workers", type=int, default=1, help="worker processes (1 runs in-process)")
    dev.add_argument("--demo", action="store_true", help="post a sample route once running")
    dev.add_argument("--demo-pause", type=float, default=2.0, help="seconds between demo rounds")
    api = sub.add_parser("api", help="serve the HTTP API (needs HUB_REDIS_URL)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    sub.add_parser("worker", help="run an arq worker (needs HUB_REDIS_URL)")
    demo = sub.add_parser("demo", help="post the sample route to a running hub")
    demo.add_argument("--url", default="http://127.0.0.1:8080")
    demo.add_argument("--key", default=os.environ.get("HUB_API_KEY"))
    demo.add_argument("--pause", type=float, default=2.0)
    bench = sub.add_parser("bench", help="measure throughput and latency against same-run ceilings")
    bench.add_argument(
        "scenario",
        nargs="?",
        default="events",
        choices=["burst", "events", "peak", "mix", "relay", "webhooks", "email-peer", "scale"],
        help="burst (or events): N events as fast as accepted (default); peak: a compressed delivery"
        " day for --events customers; mix: the delivery policy at work; relay: masked-number routing;"
        " webhooks: many inbound replies; email-peer: the same e-mails through Apprise and the hub;"
        " scale: burst with 1 to --workers worker processes, with a plot",
    )
    bench.add_argument("--events", type=int, default=2000)
    bench.add_argument("--workers", type=int, default=1, help="worker processes")
    bench.add_argument("--concurrency", type=int, default=16, help="parallel HTTP posters")
    bench.add_argument("--rate", type=float, default=0.0, help="pace posts at this many events/s (0: flat out)")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    bench.add_argument("--plot", help="scale: where to write the PNG (default docs/benchmarks-scaling.png)")
    chaos = sub.add_parser("chaos", help="post a fixed set of events while injecting faults; check the ledgers")
    chaos.add_argument(
        "scenario", choices=["all", "worker-kill", "redis-restart", "providers", "api-kill", "lost-answers"]
    )
    chaos.add_argument("--events", type=int, default=400)
    chaos.add_argument("--workers", type=int, default=2, help="worker processes")
    chaos.add_argument(
        "--fsync", choices=["always", "everysec"], help="Redis appendfsync (default: both for redis-restart)"
    )
    chaos.add_argument("--json", help="also write the results to this JSON file")
    webhooks = sub.add_parser("webhooks", help="outbound webhook deliveries")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    replay = webhooks_sub.add_parser("replay", help="send deliveries again (by id, or every dead one)")
    replay.add_argument("--id", action="append", default=[], help="a delivery id (repeatable)")
    replay.add_argument("--dead", action="store_true", help="every dead-lettered delivery")
    messages = sub.add_parser("messages", help="the message log: dead letters, held messages")
    messages_sub = messages.add_subparsers(dest="messages_command", required=True)
    listing = messages_sub.add_parser("list", help="messages in a status (dead, unknown, deferred)")
    listing.add_argument("--status", default="dead", choices=["dead", "unknown", "deferred"])
    listing.add_argument("--since", help="only those since this ISO 8601 time")
    listing.add_argument("--limit", type=int, default=100)
    mreplay = messages_sub.add_parser("replay", help="send dead-lettered messages again (never one already sent)")
    mreplay.add_argument("--id", action="append", default=[], help="a message id (repeatable)")
    mreplay.add_argument("--since", help="every message dead-lettered since this ISO 8601 time")
    sandbox = sub.add_parser("sandbox", help="talk to a running hub dev sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    sms = sandbox_sub.add_parser("sms", help="send an SMS to the hub as if from a phone (signed like Twilio)")
    sms.add_argument("--from", dest="from_", required=True, help="sender phone number, E.164")
    sms.add_argument("--body", required=True)
    sms.add_argument("--to", help="the hub's number (default: twilio.from_number)")
    sms.add_argument("--url", default="http://127.0.0.1:8080", help="the hub dev origin")
    call = sandbox_sub.add_parser("call", help="call a hub number (e.g. a proxy number) as if from a phone")
    call.add_argument("--from", dest="from_", required=True, help="caller's phone number, E.164")
    call.add_argument("--to", required=True, help="the number called (a proxy number)")
    call.add_argument("--url", default="http://127.0.0.1:8080", help="the hub dev origin")
    add_data_commands(sub)
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        handled = run_data_command(settings, args)
        if handled is not None:
            return handled
        if args.command == "dev":
            asyncio.run(_dev(args, settings))
        elif args.command == "api":
            _api(settings, args)
        elif args.command == "worker":
            _worker(settings)
        elif args.command == "demo":
            if not args.key:
                print("give --key or set HUB_API_KEY", file=sys.stderr)
                return 2
            from .demo import run_demo, run_tag

            asyncio.run(run_demo(args.url, args.key, pause=args.pause, run=run_tag()))
        elif args.command == "webhooks":
            return asyncio.run(_replay(settings, args))
        elif args.command == "messages":
            return asyncio.run(_messages(settings, args))
        elif args.command == "sandbox":
            if args.sandbox_command == "call":
                return asyncio.run(_sandbox_call(args))
            return asyncio.run(_sandbox_sms(settings, args))
        elif args.command == "chaos":
            from .chaos import run_chaos_cli

            _interrupt_on_sigterm()
            return run_chaos_cli(args)
        elif args.command == "bench":
            return _bench(args)
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0

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
from pathlib import Path

from aiohttp import web

from .config import ConfigError, Settings, load_settings
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
    from .api import create_app
    from .demo import run_demo, run_tag
    from .redis_server import EmbeddedRedis
    from .sandbox import Sandbox
    from .worker import create_worker

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
        hub_url=origin,
    )
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
    app = create_app(settings, extra_setup=lambda a: sandbox.add_routes(a, "/sandbox"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()

    worker = create_worker(settings, handle_signals=False)
    worker_task = asyncio.create_task(worker.async_run())
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
  See what the providers received:
    curl -s {origin}/sandbox/messages
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
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(worker_task, settings.worker.completion_wait + 5)
        await worker.close()
        await runner.cleanup()
        await sandbox.close()
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(settings.worker.completion_wait + 5)
        if embedded:
            embedded.stop()


# -- production halves ------------------------------------------------------------------------
def _api(settings: Settings, args: argparse.Namespace) -> None:
    from .api import create_app

    web.run_app(
        create_app(settings),
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        access_log=None,
        print=lambda *_: log.info("API listening"),
    )


def _worker(settings: Settings) -> None:
    from .worker import create_webhook_worker, create_worker, run_workers

    async def both() -> None:
        await run_workers(
            [
                create_worker(settings, handle_signals=False),
                create_webhook_worker(settings, handle_signals=False),
            ]
        )

    asyncio.run(both())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub", description="Last-mile delivery notification hub")
    parser.add_argument("--config", help="path of config.yaml (default: HUB_CONFIG or ./config.yaml)")
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
    bench.add_argument("--events", type=int, default=2000)
    bench.add_argument("--workers", type=int, default=1, help="worker processes")
    bench.add_argument("--concurrency", type=int, default=16, help="parallel HTTP posters")
    bench.add_argument("--rate", type=float, default=0.0, help="pace posts at this many events/s (0: flat out)")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
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
        elif args.command == "bench":
            from .bench import run_bench

            return run_bench(args)
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0

"""Command line: ``hub dev | api | worker | demo | bench | chaos | simulate | webhooks | messages |
sandbox``, and the data commands of hub.data_cli (``keys``, ``customers``).

- ``hub dev``: everything in one process tree for trying the hub (hub.dev).
- ``hub api`` / ``hub worker``: the two halves for production, against ``HUB_REDIS_URL``.
- ``hub demo``: post the sample route to a running hub.
- ``hub bench`` / ``hub chaos`` / ``hub simulate``: the benchmarks, chaos runs and simulations of
  the ``proofs`` package, which is not part of the installed hub: they run from a source checkout
  (docs/benchmarks.md, docs/first-attempt.md).

Each subcommand has its parser builder (``_add_*``) and its handler in ``_COMMANDS``; a handler
imports what only it needs, so ``hub api`` does not load the sandbox or the benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from redis.exceptions import RedisError

from .config import ConfigError, Settings, load_settings
from .data_cli import add_data_commands, run_data_command
from .logs import setup_logging
from .redis_server import DataDirInUse
from .since import InvalidSince, since_ms

__all__ = ["main"]

log = logging.getLogger("hub")

PROOFS_MISSING = (
    "hub bench and hub chaos run from a source checkout: the proofs package (benchmarks and chaos"
    " runs) is not part of the installed delivery-hub. In a clone of the repository run"
    " `pip install -e '.[bench]'` (or `make bench`), then this command again."
)


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from .dev import run_dev

    try:
        asyncio.run(run_dev(args, settings))
    except DataDirInUse as e:
        print(f"hub dev: {e}", file=sys.stderr)
        return 1
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from .demo import run_demo, run_tag

    if not args.key:
        print("give --key or set HUB_API_KEY", file=sys.stderr)
        return 2
    asyncio.run(run_demo(args.url, args.key, pause=args.pause, run=run_tag()))
    return 0


def _find_proofs() -> bool:
    """Whether ``proofs`` can be imported: on the path already (tests, ``python -m``), or beside
    this hub in its source checkout. An editable install maps only the product's packages, so
    there the checkout is put on the path; an installed wheel has no proofs beside it."""
    if importlib.util.find_spec("proofs") is not None:
        return True
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "proofs" / "__init__.py").is_file():
        return False
    sys.path.insert(0, str(checkout))
    return importlib.util.find_spec("proofs") is not None


def _proofs(settings: Settings, args: argparse.Namespace) -> int:
    """``hub bench`` and ``hub chaos``: the proofs package, when this is a source checkout."""
    if not _find_proofs():
        print(PROOFS_MISSING, file=sys.stderr)
        return 2
    from proofs.cli import run

    return run(args)


# -- production halves ------------------------------------------------------------------------
def _api(settings: Settings, args: argparse.Namespace) -> int:
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
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .context import warm as warm_formats
    from .metrics import serve_worker_metrics
    from .redis_conn import wait_until_reachable
    from .render import Renderer
    from .worker import create_webhook_worker, create_worker, run_workers

    if settings.ops.metrics and settings.ops.worker_metrics_port:
        # A daemon thread: it serves across the restarts below and ends with the process.
        serve_worker_metrics(settings.ops.worker_metrics_port)
        log.info("worker metrics on port %d", settings.ops.worker_metrics_port)

    # Templates compile, and each language's date names load, once per process before the first
    # job (not while the first messages wait).
    renderer = Renderer(settings.templates_dir, settings.default_locale)
    renderer.precompile()
    warm_formats(renderer.locales)

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
            return 0
        except (RedisError, OSError) as e:
            log.warning("worker stopped: Redis unreachable (%s); starting again when it answers", e)
            wait_until_reachable(settings)


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from . import keys
    from .redis_conn import connect, redis_configured
    from .webhooks import replay_webhooks

    if not redis_configured(settings):
        print("set HUB_REDIS_URL (or HUB_REDIS_SENTINEL__SENTINELS)", file=sys.stderr)
        return 2
    redis = connect(settings)
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
    """``hub sandbox sms`` and ``hub sandbox whatsapp``: a customer's message to the hub."""
    import aiohttp

    channel = getattr(args, "sandbox_command", "sms")
    to = args.to or (settings.whatsapp.from_number if channel == "whatsapp" else settings.twilio.from_number) or ""
    message = {"from": args.from_, "body": args.body, **({"to": to} if to else {})}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{args.url.rstrip('/')}/sandbox/{channel}/inbound", json=message) as resp,
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


async def _messages(settings: Settings, args: argparse.Namespace) -> int:
    from .masking import mask
    from .redis_conn import connect, redis_configured
    from .replay import replay_messages
    from .store import HubStore

    if not redis_configured(settings):
        print("set HUB_REDIS_URL (or HUB_REDIS_SENTINEL__SENTINELS)", file=sys.stderr)
        return 2
    redis = connect(settings)
    store = HubStore(redis, settings)
    try:
        if args.messages_command == "list":
            for m in await store.list_by_status(args.status, since_ms=since_ms(args.since), limit=args.limit):
                reason = m.get("error") or (m["history"][-1].get("detail", "") if m["history"] else "")
                to = mask(m.get("channel", ""), m.get("to"))
                print(f"{m['id']}  {m.get('updated_at', '')}  {m.get('channel')} {to}  {m.get('milestone')}  {reason}")
            return 0
        ids = list(args.id)
        if args.since:
            ids += [m["id"] for m in await store.list_by_status("dead", since_ms=since_ms(args.since), limit=100_000)]
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


def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    if args.sandbox_command == "call":
        return asyncio.run(_sandbox_call(args))
    return asyncio.run(_sandbox_sms(settings, args))


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "dev": _dev,
    "api": _api,
    "worker": _worker,
    "demo": _demo,
    "bench": _proofs,
    "chaos": _proofs,
    "simulate": _proofs,
    "webhooks": lambda settings, args: asyncio.run(_replay(settings, args)),
    "messages": lambda settings, args: asyncio.run(_messages(settings, args)),
    "sandbox": _sandbox,
}


# -- argument parsing, one builder per subcommand ---------------------------------------------
def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="run everything locally with an embedded Redis and sandbox providers")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--smtp-port", type=int, default=0, help="SMTP sink port (default: a free port)")
    dev.add_argument("--workers", type=int, default=1, help="worker processes (1 runs in-process)")
    dev.add_argument("--demo", action="store_true", help="reset the demo's customers and post a sample route")
    dev.add_argument("--demo-pause", type=float, default=2.0, help="seconds between demo rounds")


def _add_production(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="serve the HTTP API (needs HUB_REDIS_URL)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    sub.add_parser("worker", help="run an arq worker (needs HUB_REDIS_URL)")
    demo = sub.add_parser("demo", help="post the sample route to a running hub")
    demo.add_argument("--url", default="http://127.0.0.1:8080")
    demo.add_argument("--key", default=os.environ.get("HUB_API_KEY"))
    demo.add_argument("--pause", type=float, default=2.0)


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="measure throughput and latency against same-run ceilings (source checkout)")
    bench.add_argument(
        "scenario",
        nargs="?",
        default="events",
        choices=[
            "burst",
            "events",
            "peak",
            "mix",
            "relay",
            "webhooks",
            "email-peer",
            "scale",
            "redis-capacity",
            "hosts",
            "location",
            "availability",
        ],
        help="burst (or events): N events as fast as accepted (default); peak: a compressed delivery"
        " day for --events customers; mix: the delivery policy at work; relay: masked-number routing;"
        " webhooks: many inbound replies; email-peer: the same e-mails through Apprise and the hub;"
        " scale: burst with 1 to --workers worker processes, with a plot; redis-capacity: the events/s one"
        " Redis serves with the hub's command mix; hosts: workers under 1 to --workers host names, one Redis;"
        " location: --events driver positions beside GET /healthz; availability: route queries over --events"
        " learned customers beside GET /healthz",
    )
    bench.add_argument("--events", type=int, default=2000)
    bench.add_argument("--workers", type=int, default=1, help="worker processes")
    bench.add_argument("--concurrency", type=int, default=16, help="parallel HTTP posters")
    bench.add_argument("--rate", type=float, default=0.0, help="pace posts at this many events/s (0: flat out)")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    bench.add_argument("--clients", type=int, default=8, help="redis-capacity: replay client processes")
    bench.add_argument("--plot", help="scale: where to write the PNG (default var/benchmarks-scaling.png)")


def _add_chaos(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = sub.add_parser(
        "chaos", help="post a fixed set of events while injecting faults; check the ledgers (source checkout)"
    )
    chaos.add_argument(
        "scenario",
        choices=["all", "worker-kill", "redis-restart", "providers", "api-kill", "lost-answers", "redis-failover"],
    )
    chaos.add_argument("--events", type=int, default=400)
    chaos.add_argument("--workers", type=int, default=2, help="worker processes")
    chaos.add_argument(
        "--fsync", choices=["always", "everysec"], help="Redis appendfsync (default: both for redis-restart)"
    )
    chaos.add_argument("--json", help="also write the results to this JSON file")


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="deliver to a synthetic population through the hub, with and without its hints (source checkout)",
    )
    simulate.add_argument("scenario", choices=["availability"])
    simulate.add_argument("--customers", type=int, default=500)
    simulate.add_argument("--weeks", type=int, default=16)
    simulate.add_argument("--warmup", type=int, default=12, help="weeks the hub learns before the planner follows it")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--json", help="also write the report to this JSON file")
    simulate.add_argument(
        "--hub-env", action="append", default=[], help="a setting of the hubs under test, HUB_NAME=value (repeatable)"
    )


def _add_replays(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = sub.add_parser("sandbox", help="talk to a running hub dev sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    for channel, what in (("sms", "an SMS"), ("whatsapp", "a WhatsApp message")):
        text = sandbox_sub.add_parser(channel, help=f"send {what} to the hub as if from a phone (signed like Twilio)")
        text.add_argument("--from", dest="from_", required=True, help="sender phone number, E.164")
        text.add_argument("--body", required=True)
        text.add_argument(
            "--to", help=f"the hub's number (default: {'whatsapp' if channel == 'whatsapp' else 'twilio'}.from_number)"
        )
        text.add_argument("--url", default="http://127.0.0.1:8080", help="the hub dev origin")
    call = sandbox_sub.add_parser("call", help="call a hub number (e.g. a proxy number) as if from a phone")
    call.add_argument("--from", dest="from_", required=True, help="caller's phone number, E.164")
    call.add_argument("--to", required=True, help="the number called (a proxy number)")
    call.add_argument("--url", default="http://127.0.0.1:8080", help="the hub dev origin")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Last-mile delivery notification hub")
    parser.add_argument("--config", help="path of config.yaml (default: HUB_CONFIG, else the one in the source tree)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_dev, _add_production, _add_bench, _add_chaos, _add_replays, _add_sandbox, add_data_commands):
        add(sub)
    _add_simulate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        return _COMMANDS[args.command](settings, args)
    except InvalidSince as e:
        print(f"error: --{e}", file=sys.stderr)
        return 2
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

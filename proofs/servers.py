"""The helper processes a benchmark or chaos run starts: ``python -m proofs.servers sandbox|echo|noop-worker``.

- ``sandbox HTTP_PORT SMTP_PORT [FAULT_TIMEOUT] [CALLBACKS]``: the provider fakes (Twilio, FCM,
  an SMTP sink) with ``/bench/count`` and ``/bench/dump`` to read their ledger;
- ``echo PORT [SECRET]``: the HTTP ceiling's trivial handler and a webhook receiver;
- ``noop-worker REDIS_URL MAX_JOBS``: an arq worker of no-op jobs (the queue's ceiling).

Each runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

from hub.signing import verify

from .common import NOOP_QUEUE

__all__ = ["main"]


async def _serve_sandbox(port: int, smtp_port: int, fault_timeout: float = 30.0, callbacks: bool = False) -> None:
    from hub.sandbox import Sandbox

    sandbox = Sandbox(status_callbacks=callbacks, fault_timeout=fault_timeout)
    app = web.Application(client_max_size=1 << 24)
    sandbox.add_routes(app, "/sandbox")

    async def count(request: web.Request) -> web.Response:
        return web.json_response(Counter(e.channel for e in sandbox.ledger))

    async def dump(request: web.Request) -> web.Response:
        # digest: what the message said, so two different messages to one address are told apart.
        return web.json_response(
            [
                {
                    "channel": e.channel,
                    "to": e.to,
                    "received_at": e.to_dict()["received_at"],
                    "digest": hashlib.sha1(f"{e.subject}|{e.text}|{e.push_body}".encode()).hexdigest()[:16],
                }
                for e in sandbox.ledger
            ]
        )

    app.router.add_get("/bench/count", count)
    app.router.add_get("/bench/dump", dump)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await sandbox.start_smtp("127.0.0.1", smtp_port)
    await _wait_for_signal()
    await sandbox.close()
    await runner.cleanup()


async def _serve_echo(port: int, secret: str = "") -> None:
    """The HTTP ceiling's trivial handler, and a webhook receiver that notes what arrives when.

    With ``secret`` the receiver checks ``Hub-Signature`` as a subscriber must and answers 400
    to a bad one (the hub then retries it). ``GET /hook`` lists (time, type) of each webhook
    taken; ``GET /hook/log`` each one's id, type, message id and status, and the signatures
    refused; ``GET /hook/count`` the two counts."""
    received: list[tuple[float, str]] = []
    log: list[dict[str, Any]] = []
    refused = [0]

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        if secret and not verify(secret, request.headers.get("Hub-Signature", ""), raw):
            refused[0] += 1
            return web.Response(status=400)
        body = json.loads(raw)
        data = body.get("data") or {}
        received.append((time.time(), str(body.get("type", "?"))))
        log.append(
            {
                "id": body.get("id"),
                "type": body.get("type"),
                "message_id": data.get("message_id"),
                "status": data.get("status"),
            }
        )
        return web.Response(status=204)

    async def hooks(request: web.Request) -> web.Response:
        return web.json_response(received)

    async def hook_log(request: web.Request) -> web.Response:
        return web.json_response({"received": log, "refused": refused[0]})

    async def hook_count(request: web.Request) -> web.Response:
        return web.json_response({"received": len(log), "refused": refused[0]})

    app = web.Application()
    app.router.add_post("/", ok)
    app.router.add_post("/hook", hook)
    app.router.add_get("/hook", hooks)
    app.router.add_get("/hook/log", hook_log)
    app.router.add_get("/hook/count", hook_count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _wait_for_signal()
    await runner.cleanup()


async def _noop(ctx: dict[str, Any]) -> None:
    return None


def _noop_worker(redis_url: str, max_jobs: int) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker

    Worker(
        functions=[_noop],
        queue_name=NOOP_QUEUE,
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=max_jobs,
        poll_delay=0.05,
        keep_result=60,
        log_results=False,
    ).run()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "sandbox":
        timeout = float(argv[3]) if len(argv) > 3 else 30.0
        asyncio.run(_serve_sandbox(int(argv[1]), int(argv[2]), timeout, len(argv) > 4 and argv[4] == "1"))
    elif cmd == "echo":
        asyncio.run(_serve_echo(int(argv[1]), *argv[2:3]))
    elif cmd == "noop-worker":
        _noop_worker(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown helper process {cmd!r}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])

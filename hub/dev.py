"""``hub dev``: the whole hub in one process tree, for trying it out.

A private Redis (unless ``HUB_REDIS_URL`` reaches one), the API and the sandbox providers on
127.0.0.1:PORT, an SMTP sink and arq workers (the first in this process). Everything a provider
would be is the sandbox: the relay too, which gets ``DEV_RELAY_POOL`` when no pool is
configured, so the tour's masked call works without setting anything. ``--demo`` resets the
demo's own state (``hub.demo.reset_demo``) and posts the sample route.

The private Redis keeps its files under ``data_dir/redis``, locked while it runs
(``hub.redis_server``): a second ``hub dev`` in the same checkout stops with a message naming
the first instead of starting a second server on the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from arq.worker import Worker
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from . import console
from .api import create_app
from .config import Settings
from .demo import reset_demo, run_demo, run_tag
from .redis_conn import connect
from .redis_server import DataDirInUse, EmbeddedRedis
from .sandbox import Sandbox
from .vocabulary import MILESTONES
from .worker import create_webhook_worker, create_worker

__all__ = ["DEV_RELAY_POOL", "run_dev"]

# Proxy numbers of the sandbox relay when config gives none: one per demo customer with a phone,
# so the driver has a distinct number for each of them at once.
DEV_RELAY_POOL = ("+4915700000100", "+4915700000101", "+4915700000102")
# The WhatsApp sender of `hub dev` when config gives none (Twilio's own WhatsApp sandbox number).
DEV_WHATSAPP_NUMBER = "+14155238886"


def dev_whatsapp_templates(templates_dir: str) -> dict[str, dict[str, str]]:
    """A made-up Content SID for every milestone and catalog locale, so `hub dev` sends WhatsApp
    templates outside the 24-hour window as a deployment with approved templates would."""
    locales = sorted({"en", *(p.stem for p in (Path(templates_dir) / "locales").glob("*.po"))})
    return {
        m: {loc: "HX" + hashlib.md5(f"{m}:{loc}".encode(), usedforsecurity=False).hexdigest() for loc in locales}
        for m in MILESTONES
    }


def persistent_secret(path: Path) -> str:
    """A secret kept in ``path`` across runs (tracking links stay valid after a restart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _redis_reachable(url: str) -> bool:
    client = SyncRedis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


@dataclass
class _Dev:
    """What a running ``hub dev`` has started, for the banner and the shutdown."""

    settings: Settings
    sandbox: Sandbox
    embedded: EmbeddedRedis | None
    runner: web.AppRunner | None = None
    workers: list[Worker] = field(default_factory=list)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _sandbox(settings: Settings, origin: str) -> Sandbox:
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
    return sandbox


def dev_settings(settings: Settings, *, redis_url: str, origin: str, smtp_port: int) -> Settings:
    """The settings of a dev hub: every provider is the sandbox at ``origin``."""
    data_dir = Path(settings.data_dir)
    api_key = settings.api_key or os.environ.get("HUB_API_KEY") or "dev-" + secrets.token_urlsafe(12)
    # The operators' dashboard wants a key with the admin scope: one of its own, printed too.
    admin_key = settings.admin_api_key or "dev-admin-" + secrets.token_urlsafe(12)
    return settings.replace(
        **{
            "redis_url": redis_url,
            "redis_sentinel.sentinels": (),  # hub dev runs on its own single Redis
            "api_key": api_key,
            "admin_api_key": admin_key,
            "availability.order_slots": True,  # reschedule offers list the customer's best slot first
            "secret_key": settings.secret_key or persistent_secret(data_dir / "secret_key"),
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
            "relay.pool": settings.relay.pool or DEV_RELAY_POOL,
            "whatsapp.from_number": settings.whatsapp.from_number or DEV_WHATSAPP_NUMBER,
            "whatsapp.templates": settings.whatsapp.templates or dev_whatsapp_templates(settings.templates_dir),
        }
    )


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment of the extra ``hub worker`` processes: the same hub as this one."""
    return {
        **os.environ,
        "HUB_REDIS_URL": str(settings.redis_url),
        "HUB_API_KEY": str(settings.api_key),
        "HUB_ADMIN_API_KEY": str(settings.admin_api_key),
        "HUB_AVAILABILITY__ORDER_SLOTS": "true",
        "HUB_SECRET_KEY": str(settings.secret_key),
        "HUB_PUBLIC_URL": settings.public_url,
        "HUB_TWILIO__BASE_URL": settings.twilio.base_url,
        "HUB_FCM__BASE_URL": settings.fcm.base_url,
        "HUB_SMTP__PORT": str(settings.smtp.port),
        "HUB_SMTP__HOST": "127.0.0.1",
        "HUB_RELAY__POOL": json.dumps(list(settings.relay.pool)),
        "HUB_WHATSAPP__FROM_NUMBER": str(settings.whatsapp.from_number),
        "HUB_WHATSAPP__TEMPLATES": json.dumps(settings.whatsapp.templates),
    }


def _banner(dev: _Dev, workers: int) -> str:
    s = dev.settings
    origin, key = s.public_url, s.api_key
    where = f"  (embedded, data in {dev.embedded.data_dir})" if dev.embedded else ""
    return f"""
  Delivery hub (dev) is running.

  API and sandbox   {origin}
  API key           {key}
  Redis             {s.redis_url}{where}
  SMTP sink         127.0.0.1:{s.smtp.port}
  Relay pool        {", ".join(s.relay.pool)}
  Workers           {workers}

  Post a first event:
    curl -s -X POST {origin}/v1/events -H 'Authorization: Bearer {key}' \\
      -H 'Content-Type: application/json' -d @docs/examples/event.json
  See what every phone and inbox received (and reply as a customer):
    {origin}/sandbox           (JSON: curl -s {origin}/sandbox/messages)
  Post the next milestone of any delivery, play the demo, see the message log:
    {origin}/sandbox/console
  API reference, metrics, readiness:
    {origin}/docs   {origin}/metrics   {origin}/readyz
  The operators' dashboard (sign in with the admin key {s.admin_api_key}):
    {origin}/dashboard
  Text the hub as a customer (reply 2 to a reschedule offer, or STOP), by SMS or WhatsApp:
    .venv/bin/hub sandbox sms --url {origin} --from +12125550142 --body "5 great driver"
    .venv/bin/hub sandbox whatsapp --url {origin} --from +34612345678 --body 2
  Stop with Ctrl-C.
"""


async def _reset_demo(settings: Settings) -> None:
    redis = connect(settings)
    try:
        await reset_demo(redis, settings)
    finally:
        await redis.aclose()


async def _start(args: argparse.Namespace, settings: Settings) -> _Dev:
    """Redis, the sandbox and its SMTP sink, the API; the workers are started by the caller."""
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url or not _redis_reachable(redis_url):
        try:
            embedded = EmbeddedRedis(Path(settings.data_dir) / "redis", appendonly=True).start()
        except DataDirInUse as e:
            raise DataDirInUse(
                f"{e}: another hub dev runs in this checkout. Stop it, or give this one a data directory"
                " of its own, e.g. HUB_DATA_DIR=var/second hub dev"
            ) from None
        redis_url = embedded.url
    origin = f"http://127.0.0.1:{args.port}"
    sandbox = _sandbox(settings, origin)
    dev = _Dev(settings, sandbox, embedded)
    try:
        smtp_port = await sandbox.start_smtp("127.0.0.1", args.smtp_port or settings.sandbox.smtp_port)
        dev.settings = dev_settings(settings, redis_url=redis_url, origin=origin, smtp_port=smtp_port)
        sandbox.whatsapp_number = dev.settings.whatsapp.from_number
        if args.demo:
            await _reset_demo(dev.settings)  # before any worker can run an earlier run's job

        def sandbox_routes(app: web.Application) -> None:
            sandbox.add_routes(app, "/sandbox")
            console.add_routes(app)
            console.tell_sandbox(app, sandbox)

        dev.runner = web.AppRunner(create_app(dev.settings, extra_setup=sandbox_routes), access_log=None)
        await dev.runner.setup()
        await web.TCPSite(dev.runner, "127.0.0.1", args.port).start()
    except BaseException:
        await _stop(dev, None)
        raise
    return dev


async def _stop(dev: _Dev, workers_task: asyncio.Future[Any] | None) -> None:
    grace = dev.settings.ops.shutdown_grace_seconds + 5
    for child in dev.children:
        child.send_signal(signal.SIGTERM)
    for worker in dev.workers:
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
    if workers_task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(workers_task, grace)
    for worker in dev.workers:
        await worker.close()
    if dev.runner is not None:
        await dev.runner.cleanup()
    await dev.sandbox.close()
    for child in dev.children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(grace)
    if dev.embedded:
        dev.embedded.stop()


async def run_dev(args: argparse.Namespace, settings: Settings) -> None:
    """``hub dev``: run until SIGINT or SIGTERM, then shut everything down gracefully."""
    dev = await _start(args, settings)
    dev.workers = [
        create_worker(dev.settings, handle_signals=False),
        create_webhook_worker(dev.settings, handle_signals=False),
    ]
    workers_task = asyncio.gather(*(w.async_run() for w in dev.workers))
    for _ in range(max(0, args.workers - 1)):
        dev.children.append(subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=_child_env(dev.settings)))
    print(_banner(dev, args.workers), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = None
    if args.demo:
        demo = asyncio.create_task(
            run_demo(dev.settings.public_url, str(dev.settings.api_key), pause=args.demo_pause, run=run_tag())
        )
    try:
        await stop.wait()
    finally:
        print("\nshutting down…", flush=True)
        if demo:
            demo.cancel()
        await _stop(dev, workers_task)

"""``GET /sandbox/console`` (``hub dev`` only): drive the hub by hand and watch what it did.

- every delivery with its status and a button that posts its next milestone (through the public
  API, with the dev key, like any upstream system);
- the demo route from ``hub demo``, one round at a time or all of them on a timer;
- the message log (newest first, with each message's last reason) and the outbound webhook
  deliveries with their status.

It also tells the phones page (``/sandbox``) who each address belongs to, and which proxy
numbers it may call (``tell_sandbox``). It reads Redis directly: a development tool, never
mounted by ``hub api``. The page is ``templates/_console/console.html.j2``, its text marked for
translation like every page of the hub.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from aiohttp import web
from jinja2.sandbox import ImmutableSandboxedEnvironment
from redis.asyncio import Redis

from . import keys
from .appkeys import CONSOLE_DEMO, CONSOLE_TEMPLATES, REDIS, SETTINGS
from .config import Settings
from .demo import demo_steps, prepare_customers, run_tag
from .sandbox import Sandbox

__all__ = ["NEXT_MILESTONE", "add_routes", "tell_sandbox"]

PREFIX = "/sandbox"
NEXT_MILESTONE = {
    "order_confirmed": "shipped",
    "shipped": "in_transit",
    "in_transit": "out_for_delivery",
    "scheduled": "out_for_delivery",
    "out_for_delivery": "arriving_soon",
    "arriving_soon": "delivered",
    "eta_changed": "arriving_soon",
    "delivery_failed": "rescheduled",
    "rescheduled": "out_for_delivery",
    "exception": "out_for_delivery",
}


async def _deliveries(redis: Redis, limit: int = 100) -> list[dict[str, Any]]:
    found = []
    async for key in redis.scan_iter("hub:delivery:*", count=500):
        raw = await redis.hgetall(key)
        if raw:
            found.append({"id": key.split(":", 2)[2], **raw})
        if len(found) >= limit:
            break
    return sorted(found, key=lambda d: d.get("updated_at", ""), reverse=True)


async def _directory(redis: Redis) -> dict[str, str]:
    """Address -> who, from the customers and the deliveries' drivers (dev data is small)."""
    names: dict[str, str] = {}
    async for key in redis.scan_iter("hub:customer:*", count=500):
        raw = await redis.hgetall(key)
        who = raw.get("name") or key.split(":", 2)[2]
        for address in (raw.get("phone"), raw.get("email"), *json.loads(raw.get("push_tokens") or "[]")):
            if address:
                names[address] = who
    for d in await _deliveries(redis):
        driver = json.loads(d.get("driver") or "{}")
        if driver.get("phone"):
            names.setdefault(driver["phone"], f"driver {driver.get('name') or driver.get('id') or ''}".strip())
    return names


async def _post_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Post events as an upstream system does: through the public API, with the dev key."""
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        resp = await http.post(f"{settings.public_url}/v1/events/batch", json={"events": events})
        await resp.read()
        if resp.status >= 300:
            raise web.HTTPBadRequest(text=f"the API answered {resp.status}")


async def _prepare_customers(settings: Settings) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {settings.api_key}"}) as http:
        await prepare_customers(http, settings.public_url)


async def _message_rows(redis: Redis, deliveries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The newest 60 messages of the 30 latest deliveries, each with its last reason."""
    messages: list[dict[str, Any]] = []
    for d in deliveries[:30]:
        for mid in await redis.zrange(keys.messages_by_delivery(d["id"]), -20, -1):
            raw = await redis.hgetall(keys.message(mid))
            last = await redis.lindex(keys.message_history(mid), -1)
            if raw:
                raw["last"] = json.loads(last).get("detail", "") if last else ""
                messages.append(raw)
    messages.sort(key=lambda m: m.get("updated_at", ""), reverse=True)
    return [
        {
            "at": m.get("updated_at", "")[11:19],
            "delivery": m.get("delivery_id", ""),
            "milestone": m.get("milestone", ""),
            "channel": m.get("channel", ""),
            "to": m.get("to", ""),
            "status": m.get("status", ""),
            "last": m.get("last", ""),
        }
        for m in messages[:60]
    ]


async def _hook_rows(redis: Redis) -> list[dict[str, str]]:
    """The 30 newest outbound webhook deliveries."""
    hooks = []
    for hid in await redis.zrevrange(keys.WEBHOOK_INDEX, 0, 29):
        raw = await redis.hgetall(keys.webhook(hid))
        if raw:
            hooks.append(
                {
                    "at": raw.get("created_at", "")[11:19],
                    "type": raw.get("type", ""),
                    "status": raw.get("status", ""),
                    "attempts": raw.get("attempts", "0"),
                    "url": raw.get("url", ""),
                }
            )
    return hooks


async def page(request: web.Request) -> web.Response:
    redis = request.app[REDIS]
    deliveries = await _deliveries(redis)
    demo = request.app[CONSOLE_DEMO]
    template = request.app[CONSOLE_TEMPLATES].get_template("console.html.j2")
    body = template.render(
        prefix=PREFIX,
        round=demo["round"],
        total=len(demo_steps()),
        playing=demo["task"] is not None and not demo["task"].done(),
        deliveries=[
            {
                "id": d["id"],
                "customer": d.get("customer_id", ""),
                "merchant": d.get("merchant", ""),
                "status": d.get("status", ""),
                "next": NEXT_MILESTONE.get(d.get("status", "")),
            }
            for d in deliveries
        ],
        messages=await _message_rows(redis, deliveries),
        hooks=await _hook_rows(redis),
    )
    return web.Response(text=body, content_type="text/html")


def _next_event(delivery_id: str, raw: dict[str, str], nxt: str) -> dict[str, Any]:
    """The delivery's next milestone as an upstream system would post it."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    delivery: dict[str, Any] = {"id": delivery_id}
    for name in ("merchant", "tracking_code"):
        if raw.get(name):
            delivery[name] = raw[name]
    if raw.get("eta"):
        delivery["eta"] = json.loads(raw["eta"])
    event: dict[str, Any] = {
        "event_id": f"console-{uuid.uuid4().hex[:12]}",
        "type": nxt,
        "occurred_at": now,
        "delivery": delivery,
        "customer": {"id": raw["customer_id"]},
        "data": {"minutes": 10}
        if nxt == "arriving_soon"
        else {"pod": {"place": "front door"}}
        if nxt == "delivered"
        else {},
    }
    if raw.get("driver"):
        event["driver"] = json.loads(raw["driver"])
    return event


async def post_next(request: web.Request) -> web.Response:
    form = await request.post()
    delivery_id = str(form.get("delivery_id", ""))
    raw = await request.app[REDIS].hgetall(keys.delivery(delivery_id))
    nxt = NEXT_MILESTONE.get(raw.get("status", "")) if raw else None
    if not raw or not nxt or not raw.get("customer_id"):
        raise web.HTTPSeeOther(f"{PREFIX}/console")
    await _post_events(request.app[SETTINGS], [_next_event(delivery_id, raw, nxt)])
    raise web.HTTPSeeOther(f"{PREFIX}/console")


async def demo(request: web.Request) -> web.Response:
    form = await request.post()
    settings = request.app[SETTINGS]
    state = request.app[CONSOLE_DEMO]
    rounds = demo_steps(run=state["run"])
    what = str(form.get("action", ""))
    if what == "restart":
        if state["task"] is not None:
            state["task"].cancel()
        state.update(round=0, run=run_tag(), task=None)
    elif what == "step" and state["round"] < len(rounds):
        if state["round"] == 0:
            await _prepare_customers(settings)
        await _post_events(settings, rounds[state["round"]])
        state["round"] += 1
    elif what == "play" and (state["task"] is None or state["task"].done()):

        async def play() -> None:
            if state["round"] == 0:
                await _prepare_customers(settings)
            while state["round"] < len(rounds):
                await _post_events(settings, rounds[state["round"]])
                state["round"] += 1
                await asyncio.sleep(5)

        state["task"] = asyncio.get_running_loop().create_task(play())
    raise web.HTTPSeeOther(f"{PREFIX}/console")


async def _stop_demo(app: web.Application) -> None:
    task = app[CONSOLE_DEMO]["task"]
    if task is not None:
        task.cancel()


def _templates(templates_dir: str) -> jinja2.Environment:
    """The console's templates: sandboxed and autoescaped like the hub's others, their text marked
    for translation (null translations: English as written, until a catalog is installed)."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(Path(templates_dir) / "_console")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]  # added by the i18n extension
    return env


def add_routes(app: web.Application) -> None:
    """The console's routes under /sandbox/console (the app's settings must be set)."""
    app[CONSOLE_TEMPLATES] = _templates(app[SETTINGS].templates_dir)
    app[CONSOLE_DEMO] = {"round": 0, "run": run_tag(), "task": None}
    app.on_cleanup.append(_stop_demo)
    app.router.add_get(f"{PREFIX}/console", page)
    app.router.add_post(f"{PREFIX}/console/next", post_next)
    app.router.add_post(f"{PREFIX}/console/demo", demo)


def tell_sandbox(app: web.Application, sandbox: Sandbox) -> None:
    """Let the sandbox's phones page name each address and offer the relay's proxy numbers."""

    async def directory() -> dict[str, str]:
        return await _directory(app[REDIS])

    sandbox.proxy_numbers = tuple(app[SETTINGS].relay.pool)
    sandbox.directory = directory

"""``GET /sandbox/console`` (``hub dev`` only): drive the hub by hand and watch what it did.

- every delivery with its status and a button that posts its next milestone (through the public
  API, with the dev key, like any upstream system);
- the demo route from ``hub demo``, one round at a time or all of them on a timer;
- the message log (newest first, with each message's last reason) and the outbound webhook
  deliveries with their status.

It also tells the phones page (``/sandbox``) who each address belongs to, and which proxy
numbers it may call. It reads Redis directly: a development tool, never mounted by ``hub api``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from . import keys
from .config import Settings
from .demo import demo_steps, prepare_customers, run_tag
from .sandbox import Sandbox

__all__ = ["NEXT_MILESTONE", "add_console_routes"]

NEXT_MILESTONE = {
    "order_confirmed": "shipped",
    "shipped": "in_transit",
    "in_transit": "out_for_delivery",
    "out_for_delivery": "arriving_soon",
    "arriving_soon": "delivered",
    "eta_changed": "arriving_soon",
    "delivery_failed": "rescheduled",
    "rescheduled": "out_for_delivery",
    "exception": "out_for_delivery",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;background:#f4f5f7;color:#1d2330}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.5rem}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e6ec;padding:.35rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}
form{display:inline}button{padding:.3rem .6rem}nav a{margin-right:1rem}.meta{color:#667;font-size:.8rem}
.dead,.failed,.unknown,.expired{color:#b42318}.accepted,.delivered,.sent{color:#0f7b3e}.deferred{color:#9a6700}
"""
_DEMO = web.AppKey("console_demo", dict)


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


def add_console_routes(
    app: web.Application, settings: Settings, sandbox: Sandbox, redis_key: web.AppKey[Redis], prefix: str = "/sandbox"
) -> None:
    app[_DEMO] = {"round": 0, "run": run_tag(), "task": None}
    sandbox.proxy_numbers = tuple(settings.relay.pool)

    async def directory() -> dict[str, str]:
        return await _directory(app[redis_key])

    sandbox.directory = directory

    async def post_events(events: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {settings.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            resp = await http.post(f"{settings.public_url}/v1/events/batch", json={"events": events})
            await resp.read()
            if resp.status >= 300:
                raise web.HTTPBadRequest(text=f"the API answered {resp.status}")

    async def customers() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {settings.api_key}"}) as http:
            await prepare_customers(http, settings.public_url)

    async def page(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        deliveries = await _deliveries(redis)
        rows = []
        for d in deliveries:
            nxt = NEXT_MILESTONE.get(d.get("status", ""))
            button = (
                f'<form method="post" action="{prefix}/console/next"><input type="hidden" name="delivery_id" '
                f'value="{escape(d["id"])}"><button type="submit">Post {escape(nxt)}</button></form>'
                if nxt
                else '<span class="meta">finished</span>'
            )
            rows.append(
                f"<tr><td>{escape(d['id'])}</td><td>{escape(d.get('customer_id', ''))}</td>"
                f"<td>{escape(d.get('merchant', ''))}</td><td>{escape(d.get('status', ''))}</td><td>{button}</td></tr>"
            )
        messages: list[dict[str, Any]] = []
        for d in deliveries[:30]:
            for mid in await redis.zrange(keys.messages_by_delivery(d["id"]), -20, -1):
                raw = await redis.hgetall(keys.message(mid))
                last = await redis.lindex(keys.message_history(mid), -1)
                if raw:
                    raw["last"] = json.loads(last).get("detail", "") if last else ""
                    messages.append(raw)
        messages.sort(key=lambda m: m.get("updated_at", ""), reverse=True)
        log_rows = "".join(
            f"<tr><td class='meta'>{escape(m.get('updated_at', '')[11:19])}</td><td>{escape(m.get('delivery_id', ''))}"
            f"</td><td>{escape(m.get('milestone', ''))}</td><td>{escape(m.get('channel', ''))}</td>"
            f"<td>{escape(m.get('to', ''))}</td><td class='{escape(m.get('status', ''))}'>{escape(m.get('status', ''))}"
            f"</td><td class='meta'>{escape(m.get('last', ''))}</td></tr>"
            for m in messages[:60]
        )
        hooks = []
        for hid in await redis.zrevrange(keys.WEBHOOK_INDEX, 0, 29):
            raw = await redis.hgetall(keys.webhook(hid))
            if raw:
                hooks.append(
                    f"<tr><td class='meta'>{escape(raw.get('created_at', '')[11:19])}</td>"
                    f"<td>{escape(raw.get('type', ''))}</td><td class='{escape(raw.get('status', ''))}'>"
                    f"{escape(raw.get('status', ''))}</td><td>{escape(raw.get('attempts', '0'))}</td>"
                    f"<td class='meta'>{escape(raw.get('url', ''))}</td></tr>"
                )
        demo = request.app[_DEMO]
        total = len(demo_steps())
        playing = demo["task"] is not None and not demo["task"].done()
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sandbox console</title>
<style>{_STYLE}</style></head><body>
<h1>Sandbox console</h1>
<nav><a href="{prefix}">Phones and inboxes</a><a href="{prefix}/console">Refresh</a></nav>
<h2>Demo route</h2>
<p>Round {demo["round"]} of {total} posted{" · playing" if playing else ""}.</p>
<form method="post" action="{prefix}/console/demo"><input type="hidden" name="action" value="step">
<button type="submit" {"disabled" if demo["round"] >= total else ""}>Post the next round</button></form>
<form method="post" action="{prefix}/console/demo"><input type="hidden" name="action" value="play">
<button type="submit" {"disabled" if playing or demo["round"] >= total else ""}>
Play the rest, a round every 5 s</button></form>
<form method="post" action="{prefix}/console/demo"><input type="hidden" name="action" value="restart">
<button type="submit">Start a new demo run</button></form>
<h2>Deliveries</h2>
<table><tr><th>delivery</th><th>customer</th><th>merchant</th><th>status</th><th>next</th></tr>
{"".join(rows) or "<tr><td colspan=5>No deliveries yet: post an event or play the demo.</td></tr>"}</table>
<h2>Message log</h2>
<table><tr><th>at (UTC)</th><th>delivery</th><th>milestone</th><th>channel</th><th>to</th><th>status</th>
<th>last reason</th></tr>{log_rows or "<tr><td colspan=7>No messages yet.</td></tr>"}</table>
<h2>Webhook deliveries</h2>
<table><tr><th>at (UTC)</th><th>type</th><th>status</th><th>attempts</th><th>url</th></tr>
{"".join(hooks) or "<tr><td colspan=5>None (configure webhooks.subscriptions to send some).</td></tr>"}</table>
</body></html>"""
        return web.Response(text=body, content_type="text/html")

    async def post_next(request: web.Request) -> web.Response:
        form = await request.post()
        delivery_id = str(form.get("delivery_id", ""))
        raw = await request.app[redis_key].hgetall(keys.delivery(delivery_id))
        nxt = NEXT_MILESTONE.get(raw.get("status", "")) if raw else None
        if not raw or not nxt or not raw.get("customer_id"):
            raise web.HTTPSeeOther(f"{prefix}/console")
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
        await post_events([event])
        raise web.HTTPSeeOther(f"{prefix}/console")

    async def demo(request: web.Request) -> web.Response:
        form = await request.post()
        state = request.app[_DEMO]
        rounds = demo_steps(run=state["run"])
        what = str(form.get("action", ""))
        if what == "restart":
            if state["task"] is not None:
                state["task"].cancel()
            state.update(round=0, run=run_tag(), task=None)
        elif what == "step" and state["round"] < len(rounds):
            if state["round"] == 0:
                await customers()
            await post_events(rounds[state["round"]])
            state["round"] += 1
        elif what == "play" and (state["task"] is None or state["task"].done()):

            async def play() -> None:
                if state["round"] == 0:
                    await customers()
                while state["round"] < len(rounds):
                    await post_events(rounds[state["round"]])
                    state["round"] += 1
                    await asyncio.sleep(5)

            state["task"] = asyncio.get_running_loop().create_task(play())
        raise web.HTTPSeeOther(f"{prefix}/console")

    async def stop_demo(app: web.Application) -> None:
        task = app[_DEMO]["task"]
        if task is not None:
            task.cancel()

    app.on_cleanup.append(stop_demo)
    app.router.add_get(f"{prefix}/console", page)
    app.router.add_post(f"{prefix}/console/next", post_next)
    app.router.add_post(f"{prefix}/console/demo", demo)

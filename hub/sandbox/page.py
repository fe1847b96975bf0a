"""``GET /sandbox``: one page showing every phone and inbox the fake providers served, with a
reply box per phone that texts the hub as that phone (through the same signed path as
``POST /sandbox/sms/inbound``), a button per proxy number that calls it from that phone, tracking
links as buttons that open them, and e-mails rendered. Cards are named after the customer or
driver when ``sandbox.directory`` knows the address (``hub dev`` sets it). Plain server-rendered
HTML, autoescaped, refreshed every few seconds; no JavaScript and nothing fetched from elsewhere.
"""

from __future__ import annotations

import re
from collections import defaultdict
from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .core import Sandbox

__all__ = ["add_page_routes"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;background:#f4f5f7;color:#1d2330}
h1{font-size:1.3rem}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}
.card{background:#fff;border-radius:.6rem;padding:.8rem;box-shadow:0 1px 3px #0002}
.card h2{font-size:1rem;margin:.2rem 0 .6rem}.msg{border-left:3px solid #8aa;padding:.3rem .5rem;margin:.4rem 0;
white-space:pre-wrap;font-size:.9rem}.in{border-color:#c80;background:#fff8ee}.reply{border-color:#396}
.push{border-color:#36c}.email{border-color:#939}.meta{color:#667;font-size:.75rem}
form{display:flex;gap:.4rem;margin-top:.6rem}input[type=text]{flex:1;padding:.35rem}
details summary{cursor:pointer}a.open{display:inline-block;margin:.3rem 0;padding:.2rem .5rem;border-radius:.3rem;
background:#1d4ed8;color:#fff;text-decoration:none}iframe{width:100%;height:24rem;border:1px solid #ccd;background:#fff}
.who{color:#667;font-weight:normal;font-size:.85rem}nav a{margin-right:1rem}
"""
_LINK = re.compile(r"https?://[^\s<]+/t/[A-Za-z0-9]{12}")


def _linkify(escaped: str) -> str:
    """Tracking links in (already escaped) text become buttons that open them."""
    return _LINK.sub(
        lambda m: f'{m.group(0)}<br><a class="open" href="{m.group(0)}" target="_blank">Open the link</a>', escaped
    )


def _entry_html(e: dict[str, Any]) -> str:
    direction = (e.get("meta") or {}).get("direction")
    kind = "in" if direction == "inbound" else "reply" if direction == "reply" else e["channel"]
    when = escape(str(e.get("received_at", ""))[11:19])
    if e["channel"] == "push":
        body = f"<b>{escape(e.get('push_title') or '')}</b>\n{escape(e.get('push_body') or '')}"
    elif e["channel"] == "email":
        html = e.get("html") or ""
        rendered = (
            f'<details><summary>as the customer sees it</summary><iframe sandbox="" title="e-mail" '
            f'srcdoc="{escape(html, quote=True)}"></iframe></details>'
            if html
            else ""
        )
        body = (
            f"<b>{escape(e.get('subject') or '')}</b>{rendered}<details><summary>text</summary>"
            f"{_linkify(escape(e.get('text') or ''))}</details>"
        )
    else:
        body = _linkify(escape(e.get("text") or ""))
    label = {"in": "customer wrote", "reply": "hub answered"}.get(kind, e["channel"])
    return f'<div class="msg {kind}"><span class="meta">{when} · {label}</span>\n{body}</div>'


def add_page_routes(app: web.Application, sandbox: Sandbox, prefix: str) -> None:
    async def page(request: web.Request) -> web.Response:
        people: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in sandbox.ledger.entries():
            e = entry.to_dict()
            who = e["from"] if (e.get("meta") or {}).get("direction") == "inbound" else e["to"]
            people[str(who)].append(e)
        names = await sandbox.directory() if sandbox.directory else {}
        for address in names:  # every known customer's and driver's phone, even before any message
            if address.startswith("+"):
                people.setdefault(address, [])
        cards = []

        def newest(item: tuple[str, list[dict[str, Any]]]) -> str:
            return str(item[1][-1].get("received_at", "")) if item[1] else ""

        for who, entries in sorted(people.items(), key=newest, reverse=True):
            phone = who.startswith("+")
            form = (
                f'<form method="post" action="{prefix}/ui/reply">'
                f'<input type="hidden" name="from" value="{escape(who)}">'
                f'<input type="text" name="body" placeholder="Reply as this phone (e.g. 2, STOP, DOOR)" '
                f'aria-label="Reply as {escape(who)}" required><button type="submit">Send</button></form>'
                if phone
                else ""
            )
            calls = "".join(
                f'<form method="post" action="{prefix}/ui/call"><input type="hidden" name="from" value="{escape(who)}">'
                f'<input type="hidden" name="to" value="{escape(proxy)}">'
                f'<button type="submit">Call the proxy number {escape(proxy)}</button></form>'
                for proxy in sandbox.proxy_numbers
                if phone and proxy in " ".join(str(e.get("text") or "") for e in entries)
            )
            last_call = sandbox.last_calls.get(who)
            call_note = f'<p class="meta">Last call: {escape(last_call)}</p>' if last_call else ""
            items = "".join(_entry_html(e) for e in entries[-12:])
            name = f' <span class="who">{escape(names[who])}</span>' if who in names else ""
            cards.append(
                f'<section class="card" data-address="{escape(who)}"><h2>{escape(who)}{name}</h2>'
                f"{items}{form}{calls}{call_note}</section>"
            )
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            + ('<meta http-equiv="refresh" content="5">' if request.query.get("refresh") != "0" else "")
            + "<title>Sandbox: phones and inboxes</title>"
            + f"<style>{_STYLE}</style></head><body><h1>Sandbox: what every phone and inbox received</h1>"
            + (
                f'<nav><a href="{prefix}/console">Console: deliveries, demo, message log, webhooks</a></nav>'
                if sandbox.directory
                else ""
            )
            + '<p class="meta">Newest first · refreshes every 5 s (not with ?refresh=0) · '
            + f'JSON at <a href="{prefix}/messages">'
            f"{prefix}/messages</a></p>"
            f'<div class="grid">{"".join(cards) or "<p>Nothing sent yet.</p>"}</div></body></html>'
        )
        return web.Response(text=html, content_type="text/html")

    async def call(request: web.Request) -> web.Response:
        form = await request.post()
        from_, to = str(form.get("from", "")), str(form.get("to", ""))
        if from_ and to in sandbox.proxy_numbers and sandbox.hub_url:
            result = await sandbox.twilio.simulate_call(from_, to)
            if result.get("would_ring"):
                note = f"{to} would ring {result['would_ring']}, showing {result.get('caller_id')}"
            else:
                note = f"{to} answered: {result.get('said') or result.get('error') or 'nothing'}"
            sandbox.last_calls[from_] = note
        raise web.HTTPSeeOther(prefix or "/")

    async def reply(request: web.Request) -> web.Response:
        form = await request.post()
        from_, body = str(form.get("from", "")), str(form.get("body", ""))
        if from_ and sandbox.hub_url:
            await sandbox.twilio.simulate_inbound(from_, str(form.get("to") or sandbox.sms_number or ""), body)
        raise web.HTTPSeeOther(prefix or "/")

    app.router.add_get(prefix or "/", page)
    app.router.add_post(f"{prefix}/ui/reply", reply)
    app.router.add_post(f"{prefix}/ui/call", call)

"""``GET /sandbox``: one page showing every phone and inbox the fake providers served (a phone's
WhatsApp thread beside its texts, with its own answer box), with a
reply box per phone that texts the hub as that phone (through the same signed path as
``POST /sandbox/sms/inbound``), a button per proxy number that calls it from that phone, tracking
links as buttons that open them, and e-mails rendered. Cards are named after the customer or
driver when ``sandbox.directory`` knows the address (``hub dev`` sets it). Plain server-rendered
HTML, autoescaped, refreshed every few seconds; no JavaScript and nothing fetched from elsewhere.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any, Protocol

from aiohttp import web

from .ledger import Ledger
from .twilio_webhooks import TwilioWebhooks

__all__ = ["PageSource", "SandboxPage"]

Entries = list[dict[str, Any]]  # ledger entries as ``LedgerEntry.to_dict()`` serves them


class PageSource(Protocol):
    """What the page reads from the sandbox (``Sandbox`` is one; the page does not build it)."""

    ledger: Ledger
    twilio_webhooks: TwilioWebhooks
    sms_number: str | None  # the hub's SMS number, which replies from the page go to
    whatsapp_number: str | None  # the hub's WhatsApp number, which WhatsApp replies go to
    proxy_numbers: tuple[str, ...]  # relay numbers the page offers to call
    last_calls: dict[str, str]  # caller -> what the last simulated call did
    directory: Callable[[], Awaitable[dict[str, str]]] | None  # address -> who it is


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
.whatsapp{border-color:#25d366;background:#f0fbf4}.wa{border-top:2px solid #25d366;margin-top:.6rem;padding-top:.3rem}
.wa h3{font-size:.9rem;margin:.2rem 0;color:#128c4a}
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
    if e["channel"] == "whatsapp":
        kind += " whatsapp"
        label = f"{label} · WhatsApp" if direction else "WhatsApp"
        if e.get("meta", {}).get("content_sid"):
            label += f" template {e['meta']['content_sid']}"
    return f'<div class="msg {kind}"><span class="meta">{when} · {label}</span>\n{body}</div>'


class SandboxPage:
    """The page's three routes: the page itself, a reply sent as a phone, a call made as one."""

    def __init__(self, sandbox: PageSource, prefix: str) -> None:
        self._sandbox = sandbox
        self._prefix = prefix

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(self._prefix or "/", self.handle_page)
        app.router.add_post(f"{self._prefix}/ui/reply", self.handle_reply)
        app.router.add_post(f"{self._prefix}/ui/call", self.handle_call)

    async def handle_page(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox
        names = await sandbox.directory() if sandbox.directory else {}
        cards = [self._card(who, entries, names.get(who)) for who, entries in _people(sandbox.ledger, names)]
        html = _document(
            self._prefix,
            "".join(cards) or "<p>Nothing sent yet.</p>",
            refresh=request.query.get("refresh") != "0",
            console=sandbox.directory is not None,
        )
        return web.Response(text=html, content_type="text/html")

    def _card(self, who: str, entries: Entries, name: str | None) -> str:
        """One phone's or inbox's card: its messages, and for a phone a reply box and call buttons."""
        prefix, sandbox, phone = self._prefix, self._sandbox, who.startswith("+")
        form = (
            f'<form method="post" action="{prefix}/ui/reply">'
            f'<input type="hidden" name="from" value="{escape(who)}">'
            f'<input type="text" name="body" placeholder="Reply as this phone (e.g. 2, STOP, DOOR)" '
            f'aria-label="Reply as {escape(who)}" required><button type="submit">Send</button></form>'
            if phone
            else ""
        )
        texts = " ".join(str(e.get("text") or "") for e in entries)
        calls = "".join(
            f'<form method="post" action="{prefix}/ui/call"><input type="hidden" name="from" value="{escape(who)}">'
            f'<input type="hidden" name="to" value="{escape(proxy)}">'
            f'<button type="submit">Call the proxy number {escape(proxy)}</button></form>'
            for proxy in sandbox.proxy_numbers
            if phone and proxy in texts
        )
        last_call = sandbox.last_calls.get(who)
        call_note = f'<p class="meta">Last call: {escape(last_call)}</p>' if last_call else ""
        items = "".join(_entry_html(e) for e in entries[-12:] if e["channel"] != "whatsapp")
        label = f' <span class="who">{escape(name)}</span>' if name is not None else ""
        return (
            f'<section class="card" data-address="{escape(who)}"><h2>{escape(who)}{label}</h2>'
            f"{items}{form}{calls}{call_note}{self._whatsapp_thread(who, entries)}</section>"
        )

    def _whatsapp_thread(self, who: str, entries: Entries) -> str:
        """A phone's WhatsApp messages, beside its texts, with a box to answer over WhatsApp."""
        chat = [e for e in entries if e["channel"] == "whatsapp"]
        if not chat:
            return ""
        return (
            f'<div class="wa" data-channel="whatsapp"><h3>WhatsApp</h3>{"".join(_entry_html(e) for e in chat[-12:])}'
            f'<form method="post" action="{self._prefix}/ui/reply">'
            f'<input type="hidden" name="from" value="{escape(who)}">'
            '<input type="hidden" name="channel" value="whatsapp">'
            f'<input type="text" name="body" placeholder="Answer on WhatsApp (e.g. 2, STOP)" '
            f'aria-label="Answer on WhatsApp as {escape(who)}" required>'
            '<button type="submit">Send</button></form></div>'
        )

    async def handle_call(self, request: web.Request) -> web.Response:
        form = await request.post()
        from_, to = str(form.get("from", "")), str(form.get("to", ""))
        webhooks = self._sandbox.twilio_webhooks
        if from_ and to in self._sandbox.proxy_numbers and webhooks.hub_url:
            result = await webhooks.simulate_call(from_, to)
            if result.get("would_ring"):
                note = f"{to} would ring {result['would_ring']}, showing {result.get('caller_id')}"
            else:
                note = f"{to} answered: {result.get('said') or result.get('error') or 'nothing'}"
            self._sandbox.last_calls[from_] = note
        raise web.HTTPSeeOther(self._prefix or "/")

    async def handle_reply(self, request: web.Request) -> web.Response:
        form = await request.post()
        from_, body = str(form.get("from", "")), str(form.get("body", ""))
        webhooks = self._sandbox.twilio_webhooks
        if from_ and webhooks.hub_url and form.get("channel") == "whatsapp":
            to = str(form.get("to") or self._sandbox.whatsapp_number or "")
            await webhooks.simulate_inbound(f"whatsapp:{from_}", f"whatsapp:{to}", body)
        elif from_ and webhooks.hub_url:
            to = str(form.get("to") or self._sandbox.sms_number or "")
            await webhooks.simulate_inbound(from_, to, body)
        raise web.HTTPSeeOther(self._prefix or "/")


def _people(ledger: Ledger, names: dict[str, str]) -> list[tuple[str, Entries]]:
    """Every address with its entries, the one with the newest entry first. A text a phone sent
    belongs to that phone's card; a phone the directory knows has a card before any message."""
    people: dict[str, Entries] = defaultdict(list)
    for entry in ledger.entries():
        e = entry.to_dict()
        who = e["from"] if (e.get("meta") or {}).get("direction") == "inbound" else e["to"]
        people[str(who)].append(e)
    for address in names:
        if address.startswith("+"):
            people.setdefault(address, [])

    def newest(item: tuple[str, Entries]) -> str:
        return str(item[1][-1].get("received_at", "")) if item[1] else ""

    return sorted(people.items(), key=newest, reverse=True)


def _document(prefix: str, cards: str, *, refresh: bool, console: bool) -> str:
    """The whole page around its cards."""
    nav = f'<nav><a href="{prefix}/console">Console: deliveries, demo, message log, webhooks</a></nav>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + ('<meta http-equiv="refresh" content="5">' if refresh else "")
        + "<title>Sandbox: phones and inboxes</title>"
        + f"<style>{_STYLE}</style></head><body><h1>Sandbox: what every phone and inbox received</h1>"
        + (nav if console else "")
        + '<p class="meta">Newest first · refreshes every 5 s (not with ?refresh=0) · '
        + f'JSON at <a href="{prefix}/messages">'
        f"{prefix}/messages</a></p>"
        f'<div class="grid">{cards}</div></body></html>'
    )

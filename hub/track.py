"""The customer's tracking page: ``/t/<token>`` (a signed link from every message, hub.links).

Server-rendered, mobile first, in the customer's language and time zone, working without
JavaScript (a small script of our own refreshes the live part). It shows the delivery's timeline,
ETA window, merchant (a registered shop's logo and colour too: hub.track_page.page_brand), the
driver's first name with call and text buttons on the customer's proxy number while a relay
session is open, the driver on a map while the parcel is out for delivery (hub.location: only
within the last few stops), and proof of delivery; and lets the customer reschedule
(same effect and webhook as the SMS reply), give delivery instructions, change preferences and
rate the delivery. While a ``scheduled`` delivery's question is open (hub.prompts.stored_question)
the page asks it: confirm the window, leave with a neighbour, leave in a safe place, or another
time, each with the effect and webhook of the same numbered SMS answer.

Answers: 403 for a token that is malformed or fails its signature, 410 for an expired or revoked
link (erased customer), each a small page in the customer's language where it is known. Forms
carry a CSRF token that must match a SameSite=Strict cookie; inputs are validated with messages
in the page's language; every change is a POST that redirects (303) back to the page. A form
body that is not urlencoded answers 415, one that cannot be decoded 400. Sending an answer that
is already stored (a reload, a double click) changes nothing and sends no webhook; a rating is
taken only once the delivery is delivered (as by SMS).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from . import keys
from .appkeys import (
    CUSTOMERS,
    LINKS,
    MERCHANTS,
    RELAY,
    SETTINGS,
    STORE,
    TRACK_CSRF_KEY,
    TRACK_LANGUAGES,
    TRACK_STRINGS,
    TRACK_TEMPLATES,
)
from .context import Formatter
from .i18n import page_strings
from .location import Positions, content_security_policy
from .merchants import text_colour
from .policy import customer_timezone, quiet_window
from .prompts import stored_question
from .render import page_environment
from .track_forms import ACTIONS, reachable_channels
from .track_page import (
    CSRF_COOKIE,
    GROUPS,
    HEADERS,
    KINDS,
    NOTE_MAX,
    Page,
    brand_headers,
    page_brand,
    page_languages,
    proof_of_delivery,
)

__all__ = ["CSRF_COOKIE", "add_routes"]

STATIC = Path(__file__).resolve().parent / "static"


class _Notice(Exception):
    def __init__(self, status: int, which: str, lang: str = "en") -> None:
        super().__init__(which)
        self.status, self.which, self.lang = status, which, lang


def _csrf_cookie(request: web.Request) -> str | None:
    """This browser's CSRF cookie when it has the shape the page gives it (32 hex digits)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return cookie if len(cookie) == 32 and all(c in string.hexdigits for c in cookie) else None


def _html(
    request: web.Request, template: str, code: int = 200, *, headers: dict[str, str] | None = None, **context: Any
) -> web.Response:
    body = request.app[TRACK_TEMPLATES].get_template(template).render(**context)
    # The map's tiles are the one other origin the page loads from (images only; hub.location).
    base = headers or HEADERS
    csp = content_security_policy(base["Content-Security-Policy"], request.app[SETTINGS].tracking)
    return web.Response(
        text=body, status=code, content_type="text/html", headers={**base, "Content-Security-Policy": csp}
    )


def _notice(request: web.Request, e: _Notice) -> web.Response:
    strings = request.app[TRACK_STRINGS]
    t = strings.get(e.lang, strings["en"])
    return _html(
        request,
        "notice.html.j2",
        e.status,
        lang=e.lang,
        title=t[f"{e.which}_title"],
        text=t[f"{e.which}_text"],
        sender=request.app[SETTINGS].sender.name,
    )


async def _resolve(request: web.Request) -> Page:
    settings, strings = request.app[SETTINGS], request.app[TRACK_STRINGS]
    token = request.match_info["token"]
    link_id = request.app[LINKS].tracking_link_id(token)
    if link_id is None:
        raise _Notice(403, "forbidden")
    found = await request.app[STORE].resolve_link(link_id)
    customer = await request.app[CUSTOMERS].get(found["customer_id"]) if found else None
    if found is None or customer is None or customer.erased:
        raise _Notice(410, "gone")
    delivery = await request.app[STORE].get_delivery(found["delivery_id"])
    prefs = customer.prefs
    lang = (prefs.get("locale") or customer.locale or settings.default_locale or "en")[:2].lower()
    lang = lang if lang in strings else "en"
    if delivery is None:
        raise _Notice(410, "gone", lang)
    tz = customer_timezone(prefs, customer.timezone, customer.phone, settings.policy, settings.default_timezone)
    return Page(link_id, token, customer, delivery, lang, tz, strings[lang])


async def _driver_map(request: web.Request, delivery: dict[str, Any]) -> dict[str, Any] | None:
    """What the page shows of the driver (hub.location decides, under the privacy rules)."""
    cfg = request.app[SETTINGS].tracking
    shown = await Positions(request.app[STORE].redis, cfg).shown(delivery)
    if shown is None:
        return None
    return {
        "stops_before": shown.stops_before,
        "position": shown.position,
        "destination": shown.destination,
        "tiles": cfg.map_tiles,
        "attribution": cfg.map_attribution,
    }


async def _live_context(request: web.Request, page: Page) -> dict[str, Any]:
    d, fmt = page.delivery, Formatter(page.lang, page.timezone)
    timeline = await request.app[STORE].timeline(d["id"])
    eta = d.get("eta") or {}
    driver = d.get("driver") or {}
    contact = None
    if request.app[RELAY].cfg.pool:
        session = await request.app[RELAY].for_delivery(d["id"])
        if session and session.get("status") == "open":
            contact = session.get("customer_proxy")
    pod = next(
        (p for e in reversed(timeline) if e.get("type") == "delivered" and (p := proof_of_delivery(e.get("pod")))),
        None,
    )
    steps = [
        {
            "type": e.get("type", ""),
            "when": fmt.datetime(e["occurred_at"]),
            "detail": e.get("reason") or "",
        }
        for e in reversed(timeline)
    ]
    context = {
        "t": page.strings,
        "status": d.get("status", ""),
        "terminal": bool(d.get("terminal")),
        "eta": fmt.window(eta["start"], eta["end"])["window"] if eta.get("start") and eta.get("end") else None,
        "driver": {"first_name": (driver.get("name") or "").split(" ")[0], "contact": contact} if contact else None,
        "pod": pod,
        "timeline": steps,
        "driver_map": await _driver_map(request, d),
    }
    fingerprint = json.dumps(
        [context["status"], context["eta"], contact, pod, len(steps), context["driver_map"]], default=str
    )
    context["version"] = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    return context


def _form_token(request: web.Request, cookie: str, page: Page) -> str:
    key = request.app[TRACK_CSRF_KEY]
    return hmac.new(key, f"{cookie}\x1f{page.link_id}".encode(), hashlib.sha256).hexdigest()


def _forms_context(request: web.Request, page: Page, terminal: bool) -> dict[str, Any]:
    """What the page's forms show: the open slots, the instructions and the preferences as stored."""
    settings = request.app[SETTINGS]
    d, prefs = page.delivery, page.customer.prefs
    fmt = Formatter(page.lang, page.timezone)
    now = time.time()
    slots = []
    if not terminal:
        for s in d.get("slots") or []:
            if datetime.fromisoformat(s["start"]).timestamp() > now:
                slots.append({"id": s["id"], "label": fmt.slot(s["start"], s["end"])})
    requested = d.get("reschedule_requested")
    question = stored_question(d, page.lang, page.timezone, now)
    reachable = reachable_channels(request, page)
    chosen = prefs.get("channels") or {}
    groups = []
    for name, milestones in GROUPS.items():
        m = milestones[0]
        on = chosen.get(m) or chosen.get("default") or list(settings.channels.get(m, ()))
        groups.append({"name": name, "channels": [{"name": c, "on": c in on} for c in reachable]})
    quiet = quiet_window(prefs, page.customer.phone, settings.policy)
    window = question["window"] if question else None
    return {
        "question": {
            "window": window["label"],
            "slots": question["slots"],
            "answered": d.get("confirmed_window") == f"{window['start']}/{window['end']}",
        }
        if question and window
        else None,
        "slots": slots,
        "reschedule_requested": fmt.slot(requested["start"], requested["end"]) if requested else None,
        "kinds": KINDS,
        "instructions": d.get("instructions") or prefs.get("instructions") or {"kind": None, "note": None},
        "note_max": NOTE_MAX,
        "groups": groups,
        "quiet": {"start": quiet.start, "end": quiet.end} if quiet else {"start": "", "end": ""},
        "languages": request.app[TRACK_LANGUAGES],
        "reachable": reachable,
        "opted_out": prefs.get("opt_out") or [],
    }


async def _render_page(
    request: web.Request, page: Page, *, errors: list[str] | None = None, status: int = 200
) -> web.Response:
    settings, d = request.app[SETTINGS], page.delivery
    shop = await request.app[MERCHANTS].get(d.get("merchant_id"))
    context = await _live_context(request, page)
    cookie = _csrf_cookie(request)
    fresh = cookie is None
    cookie = cookie or secrets.token_hex(16)  # a browser without one gets one with this page
    done = request.query.get("done", "")
    saved = done in ("reschedule", "instructions", "preferences", "feedback", "confirm")
    response = _html(
        request,
        "page.html.j2",
        status,  # the HTTP status; the context's "status" is the delivery's
        headers=brand_headers(shop),
        brand=page_brand(d.get("merchant_id"), shop),
        **context,
        **_forms_context(request, page, context["terminal"]),
        lang=page.lang,
        base=page.base,
        poll_seconds=settings.tracking.poll_seconds,
        sender=settings.sender.name,
        merchant=shop.name if shop else d.get("merchant"),
        tracking_code=d.get("tracking_code"),
        flash=page.strings.get(f"saved_{done}") if saved else None,
        errors=errors or [],
        csrf=_form_token(request, cookie, page),
        rated=bool(await request.app[STORE].redis.exists(keys.feedback(d["id"]))),
    )
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            path="/t/",
            httponly=True,
            samesite="Strict",
            secure=settings.public_url.startswith("https://"),
            max_age=settings.tracking.link_days * 86_400,
        )
    return response


async def page_view(request: web.Request) -> web.Response:
    try:
        return await _render_page(request, await _resolve(request))
    except _Notice as e:
        return _notice(request, e)


async def live_view(request: web.Request) -> web.Response:
    try:
        page = await _resolve(request)
    except _Notice as e:
        return web.json_response({"error": e.which}, status=e.status, headers=HEADERS)
    context = await _live_context(request, page)
    body = request.app[TRACK_TEMPLATES].get_template("live.html.j2").render(**context)
    return web.json_response({"version": context["version"], "html": body}, headers=HEADERS)


async def action(request: web.Request) -> web.Response:
    try:
        page = await _resolve(request)
    except _Notice as e:
        return _notice(request, e)
    t = page.strings
    if request.content_type != "application/x-www-form-urlencoded":
        # The page's forms post nothing else; a multipart body would spool files to read.
        return await _render_page(request, page, errors=[t["error_form"]], status=415)
    try:
        form = await request.post()
    except (ValueError, LookupError):
        # Not a form we can read: bytes that are not in its charset (UnicodeDecodeError), a
        # charset nobody knows.
        return await _render_page(request, page, errors=[t["error_form"]], status=400)
    cookie = _csrf_cookie(request)
    given = str(form.get("csrf", ""))
    if not cookie or not hmac.compare_digest(
        given.encode("utf-8", "replace"), _form_token(request, cookie, page).encode()
    ):
        return await _render_page(request, page, errors=[t["error_csrf"]], status=403)
    which = request.match_info["action"]
    errors = await ACTIONS[which](request, page, form)
    if errors:
        return await _render_page(request, page, errors=errors, status=422)
    raise web.HTTPSeeOther(f"{page.base}?done={which}")


async def brand_css(request: web.Request) -> web.Response:
    """``/static/brand/{id}.css``: a shop's colour for its tracking pages, as CSS variables
    (track.css uses them). Only a validated ``#rrggbb`` ever goes into it."""
    merchant_id = request.match_info["id"]
    shop = await request.app[MERCHANTS].get(merchant_id)
    if shop is None or not shop.brand_color:
        raise web.HTTPNotFound()
    colour = shop.brand_color
    ink = text_colour(colour)
    body = f":root{{--brand:{colour};--brand-ink:{ink};--accent:{colour};--accent-ink:{ink}}}\n"
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    return web.Response(text=body, content_type="text/css", headers=headers)


def add_routes(app: web.Application) -> None:
    """The page's routes and what they share: the templates, the strings and the CSRF key."""
    settings = app[SETTINGS]
    app[TRACK_TEMPLATES] = page_environment(settings.templates_dir, "_track")
    strings = page_strings(settings.templates_dir)
    app[TRACK_STRINGS] = strings
    app[TRACK_LANGUAGES] = page_languages(strings)
    app[TRACK_CSRF_KEY] = hashlib.sha256(b"tracking-csrf\x1f" + (settings.secret_key or "").encode()).digest()
    app.router.add_get("/t/{token}", page_view)
    app.router.add_get("/t/{token}/live", live_view)
    app.router.add_post("/t/{token}/{action:reschedule|instructions|feedback|preferences|confirm}", action)
    app.router.add_get("/static/brand/{id}.css", brand_css)  # before /static/, which would take it
    app.router.add_static("/static/", STATIC, show_index=False, append_version=False)

"""The customer's tracking page: ``/t/<token>`` (a signed link from every message, hub.links).

Server-rendered, mobile first, in the customer's language and time zone, working without
JavaScript (a small script of our own refreshes the live part). It shows the delivery's timeline,
ETA window, merchant, the driver's first name with call and text buttons on the customer's proxy
number while a relay session is open, and proof of delivery; and lets the customer reschedule
(same effect and webhook as the SMS reply), give delivery instructions, change preferences and
rate the delivery.

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import yaml
from aiohttp import web
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from preferences import CHANNELS, CustomerRecord, CustomerStore, Preferences

from . import keys
from .config import Settings
from .context import Formatter
from .conversation import Conversations
from .links import Links
from .policy import customer_timezone, quiet_window
from .relay import Relay
from .store import HubStore

__all__ = ["TrackDeps", "add_track_routes"]

STATIC = Path(__file__).resolve().parent / "static"
CSRF_COOKIE = "hub_csrf"
NOTE_MAX = 500
KINDS = ("leave_at_door", "neighbour", "safe_place", "access_code", "note", "none")
NEEDS_NOTE = ("neighbour", "access_code", "note")
GROUPS = {
    "progress": ("shipped", "in_transit", "out_for_delivery", "arriving_soon", "eta_changed"),
    "problems": ("delivery_failed", "exception", "rescheduled"),
    "done": ("delivered", "returned", "ready_for_pickup"),
}
LANGUAGES = (("en", "English"), ("de", "Deutsch"), ("es", "Español"), ("fr", "Français"))
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


@dataclass(frozen=True)
class TrackDeps:
    """What the page needs from the API app (its application keys)."""

    settings: web.AppKey[Settings]
    store: web.AppKey[HubStore]
    customers: web.AppKey[CustomerStore]
    links: web.AppKey[Links]
    conversations: web.AppKey[Conversations]
    relay: web.AppKey[Relay]


@dataclass
class Page:
    """One resolved link: who, which delivery, in which language and time zone."""

    link_id: str
    token: str
    customer: CustomerRecord
    delivery: dict[str, Any]
    lang: str
    timezone: str
    strings: dict[str, Any]

    @property
    def base(self) -> str:
        return f"/t/{self.token}"


class _Notice(Exception):
    def __init__(self, status: int, which: str, lang: str = "en") -> None:
        super().__init__(which)
        self.status, self.which, self.lang = status, which, lang


def _proof_of_delivery(value: Any) -> dict[str, Any] | None:
    """What the page shows of a stored proof of delivery, whatever parts it has (every one is
    optional, and timeline entries outlive the code that wrote them): texts as stripped strings,
    the signature as a flag (a string names a signature image), the photo only as an http(s)
    link. None when nothing is left to show."""
    if not isinstance(value, dict):
        return None

    def text(name: str) -> str | None:
        v = value.get(name)
        return (v.strip() or None) if isinstance(v, str) else None

    photo = text("photo_url")
    pod = {
        "recipient": text("recipient"),
        "place": text("place"),
        "signature": value.get("signature") is True or text("signature") is not None,
        "photo_url": photo if photo and photo.lower().startswith(("https://", "http://")) else None,
    }
    return pod if any(pod.values()) else None


def _answer_key(page: Page, action: str, previous: Any, answer: Any) -> str:
    """The webhook key (the upstream delivery id, hub.webhooks) of a form's answer that changes
    what was stored: derived from the answer and the record it replaces (which holds when that
    was written), so a resubmit racing the first submit is the same webhook, while an answer
    that changes back after another change is a new one."""
    fact = json.dumps([action, previous, answer], sort_keys=True, default=str)
    return f"web:{page.link_id}:{action}:{hashlib.sha256(fact.encode()).hexdigest()[:32]}"


def _csrf_cookie(request: web.Request) -> str | None:
    """This browser's CSRF cookie when it has the shape the page gives it (32 hex digits)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return cookie if len(cookie) == 32 and all(c in string.hexdigits for c in cookie) else None


def _load_strings(templates_dir: str) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = yaml.safe_load((Path(templates_dir) / "_track" / "strings.yaml").read_text())
    english = raw["en"]
    return {
        lang: {**english, **values, "milestones": {**english["milestones"], **values.get("milestones", {})}}
        for lang, values in raw.items()
    }


def add_track_routes(app: web.Application, deps: TrackDeps) -> None:
    settings = app[deps.settings]
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(Path(settings.templates_dir) / "_track")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    strings = _load_strings(settings.templates_dir)
    csrf_key = hashlib.sha256(b"tracking-csrf\x1f" + (settings.secret_key or "").encode()).digest()

    def html(template: str, code: int = 200, **context: Any) -> web.Response:
        body = env.get_template(template).render(**context)
        return web.Response(text=body, status=code, content_type="text/html", headers=HEADERS)

    def notice(e: _Notice) -> web.Response:
        t = strings.get(e.lang, strings["en"])
        return html(
            "notice.html.j2",
            e.status,
            lang=e.lang,
            title=t[f"{e.which}_title"],
            text=t[f"{e.which}_text"],
            sender=settings.sender.name,
        )

    async def resolve(request: web.Request) -> Page:
        token = request.match_info["token"]
        link_id = request.app[deps.links].tracking_link_id(token)
        if link_id is None:
            raise _Notice(403, "forbidden")
        found = await request.app[deps.store].resolve_link(link_id)
        customer = await request.app[deps.customers].get(found["customer_id"]) if found else None
        if found is None or customer is None or customer.erased:
            raise _Notice(410, "gone")
        delivery = await request.app[deps.store].get_delivery(found["delivery_id"])
        prefs = customer.prefs
        lang = (prefs.get("locale") or customer.locale or settings.default_locale or "en")[:2].lower()
        lang = lang if lang in strings else "en"
        if delivery is None:
            raise _Notice(410, "gone", lang)
        tz = customer_timezone(prefs, customer.timezone, customer.phone, settings.policy, settings.default_timezone)
        return Page(link_id, token, customer, delivery, lang, tz, strings[lang])

    async def live_context(request: web.Request, page: Page) -> dict[str, Any]:
        d, fmt = page.delivery, Formatter(page.lang, page.timezone)
        timeline = await request.app[deps.store].timeline(d["id"])
        eta = d.get("eta") or {}
        driver = d.get("driver") or {}
        contact = None
        if request.app[deps.relay].cfg.pool:
            session = await request.app[deps.relay].for_delivery(d["id"])
            if session and session.get("status") == "open":
                contact = session.get("customer_proxy")
        pod = next(
            (p for e in reversed(timeline) if e.get("type") == "delivered" and (p := _proof_of_delivery(e.get("pod")))),
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
        }
        fingerprint = json.dumps([context["status"], context["eta"], contact, pod, len(steps)], default=str)
        context["version"] = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        return context

    def csrf_for(request: web.Request) -> tuple[str, bool]:
        """The form token for this browser (an HMAC of its cookie); whether the cookie is new."""
        cookie = _csrf_cookie(request)
        return (cookie, False) if cookie else (secrets.token_hex(16), True)

    def form_token(cookie: str, page: Page) -> str:
        return hmac.new(csrf_key, f"{cookie}\x1f{page.link_id}".encode(), hashlib.sha256).hexdigest()

    async def render_page(
        request: web.Request, page: Page, *, errors: list[str] | None = None, status: int = 200
    ) -> web.Response:
        d, t, prefs = page.delivery, page.strings, page.customer.prefs
        fmt = Formatter(page.lang, page.timezone)
        context = await live_context(request, page)
        now = time.time()
        slots = []
        if not context["terminal"]:
            for s in d.get("slots") or []:
                if datetime.fromisoformat(s["start"]).timestamp() > now:
                    slots.append({"id": s["id"], "label": fmt.slot(s["start"], s["end"])})
        requested = d.get("reschedule_requested")
        instructions = d.get("instructions") or prefs.get("instructions") or {"kind": None, "note": None}
        reachable = [c for c in CHANNELS if page.customer.contact(c)]
        chosen = prefs.get("channels") or {}
        groups = []
        for name, milestones in GROUPS.items():
            m = milestones[0]
            on = chosen.get(m) or chosen.get("default") or list(settings.channels.get(m, ()))
            groups.append({"name": name, "channels": [{"name": c, "on": c in on} for c in reachable]})
        quiet = quiet_window(prefs, page.customer.phone, settings.policy)
        cookie, fresh = csrf_for(request)
        done = request.query.get("done", "")
        rated = bool(await request.app[deps.store].redis.exists(keys.feedback(d["id"])))
        response = html(
            "page.html.j2",
            status,  # the HTTP status; the context's "status" is the delivery's
            **context,
            lang=page.lang,
            base=page.base,
            poll_seconds=settings.tracking.poll_seconds,
            sender=settings.sender.name,
            merchant=d.get("merchant"),
            tracking_code=d.get("tracking_code"),
            flash=t.get(f"saved_{done}") if done in ("reschedule", "instructions", "preferences", "feedback") else None,
            errors=errors or [],
            csrf=form_token(cookie, page),
            slots=slots,
            reschedule_requested=fmt.slot(requested["start"], requested["end"]) if requested else None,
            kinds=KINDS,
            instructions=instructions,
            note_max=NOTE_MAX,
            rated=rated,
            groups=groups,
            quiet={"start": quiet.start, "end": quiet.end} if quiet else {"start": "", "end": ""},
            languages=LANGUAGES,
            reachable=reachable,
            opted_out=prefs.get("opt_out") or [],
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
            return await render_page(request, await resolve(request))
        except _Notice as e:
            return notice(e)

    async def live_view(request: web.Request) -> web.Response:
        try:
            page = await resolve(request)
        except _Notice as e:
            return web.json_response({"error": e.which}, status=e.status, headers=HEADERS)
        context = await live_context(request, page)
        body = env.get_template("live.html.j2").render(**context)
        return web.json_response({"version": context["version"], "html": body}, headers=HEADERS)

    async def action(request: web.Request) -> web.Response:
        try:
            page = await resolve(request)
        except _Notice as e:
            return notice(e)
        t = page.strings
        if request.content_type != "application/x-www-form-urlencoded":
            # The page's forms post nothing else; a multipart body would spool files to read.
            return await render_page(request, page, errors=[t["error_form"]], status=415)
        try:
            form = await request.post()
        except (ValueError, LookupError):
            # Not a form we can read: bytes that are not in its charset (UnicodeDecodeError), a
            # charset nobody knows.
            return await render_page(request, page, errors=[t["error_form"]], status=400)
        cookie = _csrf_cookie(request)
        given = str(form.get("csrf", ""))
        if not cookie or not hmac.compare_digest(given.encode("utf-8", "replace"), form_token(cookie, page).encode()):
            return await render_page(request, page, errors=[t["error_csrf"]], status=403)
        which = request.match_info["action"]
        handler = {"reschedule": reschedule, "instructions": instruct, "feedback": rate, "preferences": prefer}[which]
        errors = await handler(request, page, form)
        if errors:
            return await render_page(request, page, errors=errors, status=422)
        raise web.HTTPSeeOther(f"{page.base}?done={which}")

    async def reschedule(request: web.Request, page: Page, form: Any) -> list[str]:
        t, d = page.strings, page.delivery
        if d.get("terminal"):
            return [t["error_slot_closed"]]
        now = time.time()
        offered = {s["id"]: s for s in d.get("slots") or [] if datetime.fromisoformat(s["start"]).timestamp() > now}
        slot = offered.get(str(form.get("slot", "")))
        if slot is None:
            return [t["error_slot"] if offered else t["error_slot_closed"]]
        previous = d.get("reschedule_requested")
        if isinstance(previous, dict) and previous.get("slot_id") == slot["id"]:
            return []  # already asked for (a resubmit, a reload): nothing new to tell upstream
        label = Formatter(page.lang, page.timezone).slot(slot["start"], slot["end"])
        await request.app[deps.conversations].reschedule(
            page.customer,
            {"delivery_id": d["id"]},
            {**slot, "label": label},
            page.lang,
            _answer_key(page, "reschedule", previous, slot["id"]),
            channel="web",
        )
        return []

    async def instruct(request: web.Request, page: Page, form: Any) -> list[str]:
        t = page.strings
        if page.delivery.get("terminal"):
            return [t["error_slot_closed"]]
        kind, note = str(form.get("kind", "")), str(form.get("note", "")).strip()
        errors = []
        if kind not in KINDS:
            errors.append(t["error_kind"])
        if len(note) > NOTE_MAX:
            errors.append(t["error_note"].format(max=NOTE_MAX))
        elif kind in NEEDS_NOTE and not note:
            errors.append(t["error_note_needed"])
        if errors:
            return errors
        always = form.get("always") == "1"
        answer = {"kind": kind, "note": note or None, "always": always}  # as Conversations.instruct stores it
        previous = page.delivery.get("instructions")
        if isinstance(previous, dict) and {k: previous.get(k) for k in answer} == answer:
            return []  # the instructions given already (a resubmit, a reload)
        await request.app[deps.conversations].instruct(
            page.customer,
            {"delivery_id": page.delivery["id"]},
            kind,
            note,
            always,
            page.lang,
            _answer_key(page, "instructions", previous, answer),
            channel="web",
        )
        return []

    async def rate(request: web.Request, page: Page, form: Any) -> list[str]:
        t = page.strings
        if page.delivery.get("status") != "delivered":
            return [t["error_rating_early"]]  # as by SMS: the rating prompt comes with the delivery
        try:
            rating = int(str(form.get("rating", "")))
        except ValueError:
            rating = 0
        comment = str(form.get("comment", "")).strip()
        if not 1 <= rating <= 5:
            return [t["error_rating"]]
        if len(comment) > NOTE_MAX:
            return [t["error_note"].format(max=NOTE_MAX)]
        # redis-py types every async command as Awaitable[T] | T (pyproject's "misc" overrides).
        stored = request.app[deps.store].redis.hgetall(keys.feedback(page.delivery["id"]))
        previous: dict[str, str] = await stored  # type: ignore[misc]
        if previous.get("rating") == str(rating) and previous.get("comment", "") == comment:
            return []  # this rating was given already (a resubmit, a reload)
        driver = page.delivery.get("driver") or {}
        await request.app[deps.conversations].rate(
            page.customer,
            {"delivery_id": page.delivery["id"], "driver_id": driver.get("id")},
            rating,
            comment,
            page.lang,
            _answer_key(page, "feedback", previous, [rating, comment]),
            channel="web",
        )
        return []

    async def prefer(request: web.Request, page: Page, form: Any) -> list[str]:
        t = page.strings
        reachable = [c for c in CHANNELS if page.customer.contact(c)]
        opted_out = [c for c in form.getall("opt_out", []) if c in CHANNELS]
        errors: list[str] = []
        channels: dict[str, list[str]] = {}
        for group, milestones in GROUPS.items():
            picked = [c for c in form.getall(group, []) if c in reachable]
            if not picked and any(c not in opted_out for c in reachable):
                errors.append(t["error_channels"])
                break
            for m in milestones:
                channels[m] = picked
        start, end = str(form.get("quiet_start", "")), str(form.get("quiet_end", ""))
        change: dict[str, Any] = {"channels": {m: c for m, c in channels.items() if c}, "opt_out": opted_out}
        if start or end:
            change["quiet_hours"] = {"start": start[:5], "end": end[:5]}
        language = str(form.get("language", ""))
        if language in dict(LANGUAGES):
            change["locale"] = language
        if not change["channels"]:
            del change["channels"]
        try:
            prefs = Preferences.model_validate(change)
        except ValidationError as e:
            if any(str(err["loc"][0]) == "quiet_hours" for err in e.errors()):
                errors.append(t["error_time"])
            else:
                errors.append(t["error_title"])
        if errors:
            return list(dict.fromkeys(errors))
        await request.app[deps.customers].patch_preferences(page.customer.id, prefs.model_dump(exclude_none=True))
        return []

    app.router.add_get("/t/{token}", page_view)
    app.router.add_get("/t/{token}/live", live_view)
    app.router.add_post("/t/{token}/{action:reschedule|instructions|feedback|preferences}", action)
    app.router.add_static("/static/", STATIC, show_index=False, append_version=False)

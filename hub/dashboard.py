"""The operators' dashboard: ``/dashboard``, signed in with an API key that has the ``admin`` scope.

- ``GET /dashboard``: without a session, the sign-in page; with one, the figures of a range
  (``range=24h`` hourly, ``range=30d`` daily) for all shops or one (``shop=<merchant id>``), drawn
  by hub.dashboard_view and hub.charts.
- ``POST /dashboard/sign-in``: the key is checked by ``hub.auth.check_key``, the API's own (the same
  lookup and the same counting of failures per client address and per presented key as the API:
  401, 403 without the admin scope, 429 with Retry-After). Success starts a session in Redis
  (``keys.dashboard_session``: a random id, stored only as its digest, TTL
  ``dashboard.session_hours``); the cookie holds that id, never the key.
- ``POST /dashboard/sign-out`` ends the session; ``POST /dashboard/handled`` marks a follow-up
  handled (``hub.feedback.mark_handled``, by ``dashboard:<the key's source>``).

Every POST carries a CSRF token: an HMAC of the session id (of a sign-in cookie before there is a
session), compared in constant time; a missing or wrong one is a 403 that changes nothing. The
session keeps the key's digest and each request checks that the key still exists and still has
the admin scope, so revoking it (``hub keys revoke``) ends its sessions at once. Every response
under ``/dashboard`` carries a strict CSP (nothing but the hub's own stylesheet and images; no
script at all), whatever answers it, the router's 404 included.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from . import keys
from .appkeys import DASHBOARD_CLOCK, DASHBOARD_CSRF_KEY, DASHBOARD_TEMPLATES, KEYRING, REDIS, SETTINGS
from .auth import TooManyFailures, check_key
from .config import Settings
from .dashboard_view import RANGES, dashboard_context
from .errors import ApiError
from .feedback import mark_handled
from .render import page_environment

__all__ = ["HEADERS", "PRE_COOKIE", "SESSION_COOKIE", "add_routes"]

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
SESSION_COOKIE = "hub_dash"
PRE_COOKIE = "hub_dash_signin"  # the sign-in form's CSRF cookie, before there is a session
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Session:
    """A signed-in operator: the session's id (from the cookie), the key's source and digest."""

    id: str
    source: str
    key: str


class _Refused(Exception):
    """A request the dashboard answers with a page saying why (and, for 429, when to retry)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _token(request: web.Request, purpose: str, value: str) -> str:
    key = request.app[DASHBOARD_CSRF_KEY]
    return hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def _cookie(request: web.Request, name: str) -> str | None:
    """A cookie of ours when it has the shape we give it (43 URL-safe characters)."""
    value = request.cookies.get(name, "")
    return value if len(value) == 43 and set(value) <= _TOKEN_CHARS else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


async def _key_in_force(request: web.Request, digest: str) -> bool:
    """Whether the session's key still exists with the admin scope (a revoked key ends it)."""
    for key in request.app[SETTINGS].all_keys():
        if hmac.compare_digest(key.sha256, digest):
            return "admin" in key.scopes
    found = await request.app[KEYRING].find(digest)
    return found is not None and "admin" in found.scopes


async def current_session(request: web.Request) -> Session | None:
    """The request's session, if its cookie names one that is live and its key still in force."""
    session_id = _cookie(request, SESSION_COOKIE)
    if session_id is None:
        return None
    redis = request.app[REDIS]
    stored: dict[str, str] = await redis.hgetall(keys.dashboard_session(_digest(session_id)))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    if not stored.get("key"):
        return None
    if not await _key_in_force(request, stored["key"]):
        await redis.delete(keys.dashboard_session(_digest(session_id)))
        return None
    return Session(session_id, stored.get("source", ""), stored["key"])


def _html(request: web.Request, template: str, code: int = 200, **context: Any) -> web.Response:
    body = request.app[DASHBOARD_TEMPLATES].get_template(template).render(**context)
    return web.Response(text=body, status=code, content_type="text/html")


def _sign_in_page(request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
    pre = _cookie(request, PRE_COOKIE)
    fresh = pre is None
    pre = pre or secrets.token_urlsafe(32)
    response = _html(request, "signin.html.j2", status, csrf=_token(request, "sign-in", pre), error=error)
    if fresh:
        response.set_cookie(
            PRE_COOKIE, pre, path=PREFIX, httponly=True, samesite="Strict", secure=_secure(request.app[SETTINGS])
        )
    return response


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form; 415 for any other body, 400 for one that cannot be decoded."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise _Refused(415, "send the form as application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (ValueError, LookupError) as e:
        raise _Refused(400, "the form cannot be read (bad encoding or an unknown charset)") from e
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _signed_in_form(request: web.Request) -> tuple[Session, dict[str, str]]:
    """The session and the form of a POST made from a dashboard page, its CSRF token checked."""
    session = await current_session(request)
    form = await _form(request)
    if session is None:
        raise _Refused(403, "you are not signed in (or the session ended): sign in again")
    if not _same(form.get("csrf", ""), _token(request, "session", session.id)):
        raise _Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return session, form


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _refused(request: web.Request, e: _Refused) -> web.Response:
    response = _html(request, "notice.html.j2", e.status, status=e.status, message=e.message)
    response.headers.update(e.headers)
    return response


async def page(request: web.Request) -> web.Response:
    session = await current_session(request)
    if session is None:
        return _sign_in_page(request)
    range_name = request.query.get("range", "24h")
    if range_name not in RANGES:
        return _refused(request, _Refused(400, f"range: use one of {', '.join(RANGES)}"))
    shop = request.query.get("shop", "") or None
    if shop is not None and len(shop) > 200:
        return _refused(request, _Refused(400, "shop: at most 200 characters"))
    settings = request.app[SETTINGS]
    context = await dashboard_context(
        request.app[REDIS],
        settings,
        range_name=range_name,
        shop=shop,
        now_ms=int(request.app[DASHBOARD_CLOCK]() * 1000),
    )
    return _html(
        request,
        "page.html.j2",
        **context,
        source=session.source,
        csrf=_token(request, "session", session.id),
        done=request.query.get("done") == "handled",
    )


async def sign_in(request: web.Request) -> web.Response:
    try:
        form = await _form(request)
    except _Refused as e:
        return _sign_in_page(request, e.status, e.message)
    pre = _cookie(request, PRE_COOKIE)
    if pre is None or not _same(form.get("csrf", ""), _token(request, "sign-in", pre)):
        return _sign_in_page(request, 403, "the form's CSRF token is missing or wrong: try again")
    try:
        key = await check_key(request, form.get("key", "").strip(), "admin")
    except TooManyFailures as e:
        response = _sign_in_page(request, e.status, e.message)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    except ApiError as e:
        return _sign_in_page(request, e.status, e.message)
    settings = request.app[SETTINGS]
    session_id = secrets.token_urlsafe(32)
    ttl = int(settings.dashboard.session_hours * 3600)
    fields = {"source": key.source, "key": key.sha256, "created_at": str(int(time.time()))}
    async with request.app[REDIS].pipeline(transaction=True) as pipe:
        pipe.hset(keys.dashboard_session(_digest(session_id)), mapping=fields)
        pipe.expire(keys.dashboard_session(_digest(session_id)), ttl)
        await pipe.execute()
    log.info("dashboard: %s signed in", key.source)
    response = _see_other(PREFIX)
    response.set_cookie(
        SESSION_COOKIE, session_id, path=PREFIX, httponly=True, samesite="Strict", secure=_secure(settings), max_age=ttl
    )
    response.del_cookie(PRE_COOKIE, path=PREFIX)
    return response


async def sign_out(request: web.Request) -> web.Response:
    try:
        session, _ = await _signed_in_form(request)
    except _Refused as e:
        return _refused(request, e)
    await request.app[REDIS].delete(keys.dashboard_session(_digest(session.id)))
    log.info("dashboard: %s signed out", session.source)
    response = _see_other(PREFIX)
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def handled(request: web.Request) -> web.Response:
    try:
        session, form = await _signed_in_form(request)
        delivery_id = form.get("delivery_id", "").strip()
        if not delivery_id or len(delivery_id) > 200:
            raise _Refused(422, "delivery_id: the follow-up's delivery id (1-200 characters) is required")
        range_name = form.get("range", "24h")
        range_name = range_name if range_name in RANGES else "24h"
    except _Refused as e:
        return _refused(request, e)
    settings = request.app[SETTINGS]
    if not await mark_handled(request.app[REDIS], settings, delivery_id, by=f"dashboard:{session.source}"):
        return _refused(request, _Refused(404, f"delivery_id: no follow-up for {delivery_id!r}"))
    log.info("dashboard: %s marked the follow-up of %s handled", session.source, delivery_id)
    shop = form.get("shop", "")
    back = URL(PREFIX).with_query({"range": range_name, **({"shop": shop} if shop else {}), "done": "handled"})
    return _see_other(str(back))


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The dashboard's headers on every response under /dashboard, whoever made it."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers.update(HEADERS)


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[DASHBOARD_TEMPLATES] = page_environment(settings.templates_dir, "_dashboard")
    app[DASHBOARD_CSRF_KEY] = hashlib.sha256(b"dashboard-csrf\x1f" + (settings.secret_key or "").encode()).digest()
    app[DASHBOARD_CLOCK] = time.time
    app.on_response_prepare.append(_security_headers)
    app.router.add_get(PREFIX, page)
    app.router.add_post(PREFIX + "/sign-in", sign_in)
    app.router.add_post(PREFIX + "/sign-out", sign_out)
    app.router.add_post(PREFIX + "/handled", handled)

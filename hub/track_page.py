"""What the tracking page's handlers (hub.track) and forms (hub.track_forms) share: the resolved
link (``Page``), the form vocabularies, the response headers, and the key of a form's webhook."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from babel import Locale, UnknownLocaleError

from preferences import CustomerRecord

from .merchants import Merchant

__all__ = [
    "CSRF_COOKIE",
    "GROUPS",
    "HEADERS",
    "KINDS",
    "NEEDS_NOTE",
    "NOTE_MAX",
    "Page",
    "answer_key",
    "brand_headers",
    "page_brand",
    "page_languages",
    "proof_of_delivery",
]

CSRF_COOKIE = "hub_csrf"
NOTE_MAX = 500
KINDS = ("leave_at_door", "neighbour", "safe_place", "access_code", "note", "none")
NEEDS_NOTE = ("neighbour", "access_code", "note")
GROUPS = {
    "progress": ("shipped", "in_transit", "out_for_delivery", "arriving_soon", "eta_changed"),
    "problems": ("delivery_failed", "exception", "rescheduled"),
    "done": ("delivered", "returned", "ready_for_pickup"),
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


def brand_headers(shop: Merchant | None) -> dict[str, str]:
    """The page's headers; a shop's logo on another host is allowed by its origin alone in img-src
    (the browser fetches it from there: nothing is proxied, and no other image source opens)."""
    logo = shop.logo_url if shop else None
    if not logo or not logo.startswith("https://"):
        return HEADERS
    parts = urlsplit(logo)
    origin = f"https://{parts.netloc}"
    csp = HEADERS["Content-Security-Policy"].replace("img-src 'self';", f"img-src 'self' {origin};", 1)
    return {**HEADERS, "Content-Security-Policy": csp}


def page_brand(merchant_id: str | None, shop: Merchant | None) -> dict[str, Any] | None:
    """What the page's header shows of a registered shop: its logo and its stylesheet (the colour,
    served by ``brand_css``, since the page's CSP allows no inline style)."""
    if shop is None or merchant_id is None:
        return None
    colour = shop.brand_color
    css = f"/static/brand/{quote(merchant_id)}.css?v={colour[1:]}" if colour else None
    return {"logo_url": shop.logo_url, "css": css}


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


def proof_of_delivery(value: Any) -> dict[str, Any] | None:
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


def answer_key(page: Page, action: str, previous: Any, answer: Any) -> str:
    """The webhook key (the upstream delivery id, hub.webhooks) of a form's answer that changes
    what was stored: derived from the answer and the record it replaces (which holds when that
    was written), so a resubmit racing the first submit is the same webhook, while an answer
    that changes back after another change is a new one."""
    fact = json.dumps([action, previous, answer], sort_keys=True, default=str)
    return f"web:{page.link_id}:{action}:{hashlib.sha256(fact.encode()).hexdigest()[:32]}"


def page_languages(strings: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The page's language choices: every language with a catalog (English first, then by code),
    each named in its own language ("Deutsch", "Español"), so a new catalog is a new choice."""
    ordered = sorted(strings, key=lambda lang: (lang != "en", lang))
    return tuple((lang, _own_name(lang)) for lang in ordered)


def _own_name(lang: str) -> str:
    try:
        locale = Locale.parse(lang.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return lang
    name = locale.get_display_name(locale) or lang
    return name[:1].upper() + name[1:]

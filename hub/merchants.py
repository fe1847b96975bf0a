"""Merchants (shops): the identity a delivery's messages and page carry.

``Merchant`` is a shop's record as ``PUT /v1/merchants/{id}`` and the ``brands.merchants`` setting
take it (validated field by field, so a bad one is a 422 naming it). ``Merchants`` finds a shop
by id: the entries registered through the API (one Redis hash, ``keys.MERCHANTS``) win over the
read-only entries of the configuration. The worker asks once per event at most, and a small
in-process cache (``brands.cache_seconds``) makes most of those asks free. ``Brand`` is the
shop as one event's messages use it (the rendering, the senders).

An unknown or missing merchant id is never an error: the hub's own identity applies.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from redis.asyncio import Redis

from preferences.validation import check_email, check_phone

from . import keys
from .vocabulary import MILESTONES

__all__ = ["MERCHANT_ID", "Brand", "Merchant", "MerchantEntry", "Merchants", "is_alphanumeric_sender"]

MERCHANT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_MERCHANT_ID = re.compile(MERCHANT_ID)
_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_NAMED = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<address>[^<>\s]+)>$")
_URL_SAFE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&()*+=%]+$")  # no spaces, quotes, commas or semicolons
_STATIC = "/static/"


def is_alphanumeric_sender(sender: str) -> bool:
    """An alphanumeric sender id (one-way: it cannot receive replies), not a number."""
    return bool(_ALPHANUMERIC.match(sender))


def _ascii_address(value: str, what: str) -> str:
    address = check_email(value)
    if not address.isascii():
        raise ValueError(f"{what} must be an ASCII e-mail address")
    return address


def _https(value: str, *, static: bool) -> str:
    if static and value.startswith(_STATIC) and _URL_SAFE.match(value) and ".." not in value:
        return value
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or not _URL_SAFE.match(value):
        where = " or a path under /static/ on this hub" if static else ""
        raise ValueError(f"must be an https:// URL{where} (no spaces, quotes, commas or semicolons)")
    return value


class Merchant(BaseModel):
    """A shop's identity. Only ``name`` is required; what is left out falls back to the hub's."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: str = Field(min_length=1, max_length=120, description="the shop's name, as every text says it")
    email_from: str | None = Field(
        None, max_length=320, description='e-mail From, "Name <address>" (the domain must let the hub send for it)'
    )
    reply_to: str | None = Field(None, max_length=254, description="e-mail Reply-To address")
    sms_sender: str | None = Field(
        None,
        max_length=20,
        description="an alphanumeric sender id (1-11 letters, digits or spaces, at least one letter), used where"
        " brands.alphanumeric_countries allows it and the SMS asks for no answer; or an E.164 number of your"
        " Twilio account, used for every SMS",
    )
    logo_url: str | None = Field(
        None, max_length=2000, description="https URL of the logo, or a path under /static/ on this hub"
    )
    brand_color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$", description="#RRGGBB")
    support_url: str | None = Field(None, max_length=2000, description="https URL of the shop's help")
    support_phone: str | None = Field(None, max_length=40, description="the shop's support number (E.164)")
    whatsapp_templates: dict[str, dict[str, str]] | None = Field(
        None,
        description="the shop's own approved WhatsApp Content templates, {milestone: {locale: content_sid}}, used"
        " before whatsapp.templates (the hub's) for its deliveries",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("no control characters")
        return value

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(c) < 32 for c in value):
            raise ValueError("no control characters")
        found = _NAMED.match(value)
        name, address = (found["name"].strip().strip('"').strip(), found["address"]) if found else ("", value)
        return email.utils.formataddr((name, _ascii_address(address, "email_from")))

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return None if value is None else _ascii_address(value, "reply_to")

    @field_validator("sms_sender")
    @classmethod
    def _sms_sender(cls, value: str | None) -> str | None:
        if value is None or is_alphanumeric_sender(value):
            return value
        if value.startswith("+"):
            return check_phone(value, "US")
        raise ValueError(
            "use an alphanumeric sender id (1-11 letters, digits or spaces, at least one letter) or an E.164 number"
        )

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        return None if value is None else _https(value, static=True)

    @field_validator("support_url")
    @classmethod
    def _support_url(cls, value: str | None) -> str | None:
        return None if value is None else _https(value, static=False)

    @field_validator("brand_color")
    @classmethod
    def _colour(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @field_validator("whatsapp_templates")
    @classmethod
    def _content_sids(cls, value: dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]] | None:
        for milestone, by_locale in (value or {}).items():
            if milestone not in MILESTONES:
                raise ValueError(f"unknown milestone {milestone!r}")
            for locale, sid in by_locale.items():
                if not _CONTENT_SID.match(sid) or not 1 <= len(locale) <= 20:
                    raise ValueError(f"{locale!r}: a Content SID is HX followed by 32 hex digits")
        return value

    @field_validator("support_phone")
    @classmethod
    def _support_phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        region = str((info.context or {}).get("region", "DE"))
        return None if value is None else check_phone(value, region)

    def view(self, merchant_id: str, source: str) -> dict[str, Any]:
        """The API's view: the fields set, the id, and where the entry comes from."""
        return {"id": merchant_id, **self.model_dump(exclude_none=True), "source": source}


class MerchantEntry(Merchant):
    """A shop listed in the configuration (``brands.merchants``): its id and its identity."""

    id: str = Field(pattern=MERCHANT_ID, description="the shop's id, as events name it (delivery.merchant_id)")


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (#rrggbb; WCAG relative luminance)."""

    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(background[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white (1.05 / (L + 0.05)) against contrast with black ((L + 0.05) / 0.05).
    return "#ffffff" if 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 else "#111111"


@dataclass(frozen=True)
class Brand:
    """A shop as one event's messages use it. ``one_way_sms``: the event's SMS asks for no answer,
    so it may come from an alphanumeric sender (which cannot receive one)."""

    id: str
    merchant: Merchant
    one_way_sms: bool = False

    def context(self, public_url: str) -> dict[str, Any]:
        """What templates see as ``merchant`` (a logo on this hub made absolute for e-mail)."""
        m = self.merchant
        logo = m.logo_url
        if logo and logo.startswith("/"):
            logo = public_url.rstrip("/") + logo
        return {
            "id": self.id,
            "name": m.name,
            "logo_url": logo,
            "brand_color": m.brand_color,
            "text_color": text_colour(m.brand_color) if m.brand_color else None,
            "support_url": m.support_url,
            "support_phone": m.support_phone,
        }


def _decode(raw: str) -> Merchant | None:
    try:
        # Validated when it was stored: rebuilt without validating again (no phone or address parsing).
        return Merchant.model_construct(**json.loads(raw))
    except (ValueError, TypeError):
        return None


class Merchants:
    """The shops: registered through the API (Redis) over the configuration's entries."""

    def __init__(self, redis: Redis, base: Iterable[MerchantEntry] = (), cache_seconds: float = 10.0) -> None:
        self.redis = redis
        self.base: dict[str, Merchant] = {e.id: Merchant.model_construct(**e.model_dump(exclude={"id"})) for e in base}
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Merchant | None]] = {}
        self._pending: dict[str, asyncio.Future[Merchant | None]] = {}

    async def get(self, merchant_id: str | None) -> Merchant | None:
        """The shop with this id, or None (no id, a malformed one, or none registered)."""
        if not merchant_id or not _MERCHANT_ID.match(merchant_id):
            return None
        now = time.monotonic()
        cached = self._cache.get(merchant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._pending.get(merchant_id)
        if pending is not None:  # a read of this shop is on its way (concurrent events): share it
            return await asyncio.shield(pending)
        self._pending[merchant_id] = pending = asyncio.get_running_loop().create_future()
        try:
            raw: str | None = await self.redis.hget(keys.MERCHANTS, merchant_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
            found = (_decode(raw) if raw else None) or self.base.get(merchant_id)
        except BaseException as e:
            pending.set_exception(e)
            pending.exception()  # those waiting get it; nobody waiting is no unretrieved error
            raise
        finally:
            del self._pending[merchant_id]
        pending.set_result(found)
        if self.cache_seconds > 0:
            if len(self._cache) > 10_000:  # ids come from events: never let them grow the cache unbounded
                self._cache.clear()
            self._cache[merchant_id] = (now + self.cache_seconds, found)
        return found

    async def source_of(self, merchant_id: str) -> str | None:
        """``api`` or ``config`` (where the entry in force comes from), or None."""
        stored: bool = await self.redis.hexists(keys.MERCHANTS, merchant_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        if stored:
            return "api"
        return "config" if merchant_id in self.base else None

    async def put(self, merchant_id: str, merchant: Merchant) -> bool:
        """Create or replace the API's entry; True when it is new."""
        body = json.dumps(merchant.model_dump(exclude_none=True), separators=(",", ":"))
        added: int = await self.redis.hset(keys.MERCHANTS, merchant_id, body)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        self._cache.pop(merchant_id, None)
        return added == 1

    async def delete(self, merchant_id: str) -> bool:
        """Remove the API's entry (a configuration entry with the id applies again); True when there was one."""
        removed: int = await self.redis.hdel(keys.MERCHANTS, merchant_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        self._cache.pop(merchant_id, None)
        return removed == 1

    async def listing(self) -> list[dict[str, Any]]:
        """Every shop in force, by id: the API's entries and the configuration's not overridden."""
        stored: dict[str, str] = await self.redis.hgetall(keys.MERCHANTS)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        views: dict[str, dict[str, Any]] = {i: m.view(i, "config") for i, m in self.base.items()}
        for merchant_id, raw in stored.items():
            found = _decode(raw)
            if found is not None:
                views[merchant_id] = found.view(merchant_id, "api")
        return [views[i] for i in sorted(views)]

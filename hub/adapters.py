"""Upstream adapters: vendors' webhook payloads mapped onto the hub's milestones.

Routes (docs/integrations.md):

    GET  /webhooks/onfleet?check=<value>   Onfleet's validation handshake: the value, as text/plain
    POST /webhooks/onfleet                 Onfleet task webhooks (X-Onfleet-Signature)
    POST /webhooks/aftership               AfterShip tracking webhooks (aftership-hmac-sha256)
    POST /webhooks/generic/{name}          any JSON webhook, through the named mapping in config

Every POST is checked against its signature over the raw body first (401 with the hub's error
body when it is missing or wrong). An adapter without a secret is disabled and answers 404 (a
vendor's webhook pointed at it stays visibly broken instead of being silently dropped). The body
is then mapped (``hub.adapters_map``), validated with ``parse_event`` exactly like
``POST /v1/events`` and queued under the adapter's own source (``onfleet``, ``aftership``,
``generic:<name>``): 202 with ``{"event_id", "status": accepted|duplicate|conflict}``. What the
hub cannot use (an unmapped status or trigger, a payload without a delivery id, required fields
the schema refuses) is logged and acknowledged with 200 ``{"status": "ignored", "reason"}``:
vendors retry every non-2xx answer for hours, and a retry of the same body can never succeed.
Optional contact fields the schema refuses (a malformed phone or e-mail) are dropped, not fatal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from preferences import check_phone

from . import jsonbody
from .adapters_generic import map_generic
from .adapters_map import IdKey, OptOut, Outcome, Skipped, map_aftership, map_onfleet
from .adapters_settings import GenericMapping
from .appkeys import CONVERSATIONS, CUSTOMERS, SETTINGS, STORE
from .errors import ApiError
from .intake import accept_events
from .masking import mask_phone
from .schema import Event, EventInvalid, parse_event

__all__ = ["add_routes", "sign"]

log = logging.getLogger(__name__)

# Fields an event cannot do without: when the schema refuses one of them the webhook is ignored.
_REQUIRED = ("event_id", "type", "occurred_at", "delivery", "delivery.id", "customer", "customer.id")
_CHECK_MAX = 512  # longest ?check= value echoed back


# -- signatures ------------------------------------------------------------------------------
def sign(key: bytes, body: bytes, algorithm: str = "sha256", encoding: str = "hex") -> str:
    """The HMAC of ``body`` as vendors write it in their signature headers."""
    digest = hmac.new(key, body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def _verify(given: str | None, expected: str, *, case_insensitive: bool = False) -> None:
    if not given:
        raise ApiError(401, "invalid_signature", "the webhook's signature header is missing")
    if case_insensitive:
        given, expected = given.lower(), expected.lower()
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "invalid_signature", "the webhook's signature does not match its body")


def _secret_bytes(secret: str, encoding: str, name: str) -> bytes:
    try:
        if encoding == "hex":
            return binascii.unhexlify(secret.strip())
        if encoding == "base64":
            return base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        log.error("adapter %s: the configured secret is not valid %s", name, encoding)
        raise ApiError(404, "adapter_disabled", f"the {name} adapter's secret is not valid {encoding}") from e
    return secret.encode()


def _disabled(name: str, setting: str) -> ApiError:
    return ApiError(404, "adapter_disabled", f"the {name} adapter is not configured: set {setting}")


def _decode(raw: bytes) -> Any:
    """The body as JSON, or None when ``hub.jsonbody`` refuses it (NaN, Infinity, numbers past
    its limits, nesting too deep, not UTF-8)."""
    try:
        return jsonbody.loads(raw)
    except jsonbody.InvalidJson:
        return None


# -- from outcome to answer ------------------------------------------------------------------
def _json(data: dict[str, Any], status: int) -> web.Response:
    return web.json_response(data, status=status)


def _ignored(source: str, reason: str, delivery_id: str | None = None, **more: Any) -> web.Response:
    log.info("%s webhook ignored: %s", source, reason, extra={"delivery_id": delivery_id, "source": source})
    return _json({"status": "ignored", "reason": reason, **more}, 200)


def _drop(payload: dict[str, Any], dotted: str) -> None:
    node: Any = payload
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _validate(payload: dict[str, Any], region: str) -> Event | dict[str, str]:
    """The event, or the fields that stop it. Optional fields the schema refuses are dropped
    (a vendor's malformed phone must not lose the delivery update)."""
    try:
        return parse_event(payload, region)
    except EventInvalid as e:
        fatal = {f: m for f, m in e.fields.items() if f in _REQUIRED or f == "body"}
        if fatal:
            return fatal
        for field in e.fields:
            _drop(payload, field)
        log.warning("adapter dropped invalid fields: %s", ", ".join(sorted(e.fields)))
    try:
        return parse_event(payload, region)
    except EventInvalid as e:
        return e.fields


async def _deliver(request: web.Request, source: str, outcome: Outcome) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    if isinstance(outcome, Skipped):
        return _ignored(source, outcome.reason, outcome.delivery_id)
    if isinstance(outcome, OptOut):
        return await _opt_out(request, source, outcome)
    payload = outcome.payload
    if "occurred_at" not in payload:
        # No time in the payload: now. A retry then differs in its time and is answered as a
        # conflict (acknowledged, not sent again).
        payload["occurred_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    checked = _validate(payload, settings.default_region)
    delivery_id = (payload.get("delivery") or {}).get("id")
    if not isinstance(checked, Event):
        log.warning(
            "%s webhook not usable: %s",
            source,
            "; ".join(f"{k}: {v}" for k, v in checked.items()),
            extra={"delivery_id": delivery_id, "source": source},
        )
        return _json({"status": "ignored", "reason": "the mapped event is invalid", "fields": checked}, 200)
    [status] = await accept_events(app[STORE], source, [checked])
    log.info(
        "%s webhook %s as %s: %s",
        source,
        status,
        checked.type,
        checked.event_id,
        extra={"event_id": checked.event_id, "delivery_id": checked.delivery.id, "source": source},
    )
    return _json({"event_id": checked.event_id, "type": checked.type, "status": status}, 202)


async def _opt_out(request: web.Request, source: str, outcome: OptOut) -> web.Response:
    app = request.app
    try:
        phone = check_phone(outcome.phone, app[SETTINGS].default_region)
    except ValueError:
        return _ignored(source, "opt-out for a phone number that is not valid")
    conversations = app[CONVERSATIONS]
    # The hub's own STOP handling records the opt-out; one record, honoured before every send.
    await conversations.opt_out(phone, "STOP", source)
    customer = await app[CUSTOMERS].by_phone(phone)
    if customer is not None:
        await conversations.webhooks.emit(
            "contact.opted_out",
            {"customer_id": customer.id, "channel": "sms", "keyword": "STOP", "via": source},
            key=f"{source}:{outcome.key}",
        )
    log.info("%s: SMS opt-out recorded for %s", source, mask_phone(phone), extra={"source": source})
    return _json({"status": "opted_out", "channel": "sms"}, 200)


# -- handlers --------------------------------------------------------------------------------
def _ids(request: web.Request) -> IdKey:
    settings = request.app[SETTINGS]
    return IdKey((settings.secret_key or "").encode(), settings.default_region)


async def onfleet_check(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].adapters.onfleet.secret:
        raise _disabled("onfleet", "HUB_ADAPTERS__ONFLEET__SECRET")
    value = request.query.get("check")
    if not value or len(value) > _CHECK_MAX:
        raise ApiError(400, "missing_check", f"give ?check=<value> (at most {_CHECK_MAX} characters)")
    return web.Response(text=value, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})


async def onfleet(request: web.Request) -> web.Response:
    config = request.app[SETTINGS].adapters.onfleet
    if not config.secret:
        raise _disabled("onfleet", "HUB_ADAPTERS__ONFLEET__SECRET")
    raw = await request.read()
    key = _secret_bytes(config.secret, "hex", "onfleet")
    _verify(request.headers.get("X-Onfleet-Signature"), sign(key, raw, "sha512"), case_insensitive=True)
    return await _deliver(request, "onfleet", map_onfleet(_decode(raw), config, _ids(request)))


async def aftership(request: web.Request) -> web.Response:
    config = request.app[SETTINGS].adapters.aftership
    if not config.secret:
        raise _disabled("aftership", "HUB_ADAPTERS__AFTERSHIP__SECRET")
    raw = await request.read()
    _verify(request.headers.get("aftership-hmac-sha256"), sign(config.secret.encode(), raw, "sha256", "base64"))
    return await _deliver(request, "aftership", map_aftership(_decode(raw), config, _ids(request)))


async def generic(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    mapping: GenericMapping | None = request.app[SETTINGS].adapters.generic.get(name)
    if mapping is None:
        raise ApiError(404, "unknown_adapter", "no generic mapping of this name is configured")
    if not mapping.secret:
        raise _disabled(f"generic:{name}", f"HUB_ADAPTERS__GENERIC__{name.upper()}__SECRET")
    raw = await request.read()
    key = _secret_bytes(mapping.secret, mapping.secret_encoding, f"generic:{name}")
    given = request.headers.get(mapping.signature_header)
    if given is not None and mapping.signature_prefix:
        given = given.strip()
        given = given[len(mapping.signature_prefix) :] if given.startswith(mapping.signature_prefix) else ""
    expected = sign(key, raw, mapping.algorithm, mapping.encoding)
    _verify(given, expected, case_insensitive=mapping.encoding == "hex")
    body = _decode(raw)
    if body is None:
        return _ignored(f"generic:{name}", "the body is not JSON")
    return await _deliver(request, f"generic:{name}", map_generic(name, body, mapping, _ids(request)))


def add_routes(app: web.Application) -> None:
    """Register the adapters' webhook routes."""
    r = app.router
    r.add_get("/webhooks/onfleet", onfleet_check)
    r.add_post("/webhooks/onfleet", onfleet)
    r.add_post("/webhooks/aftership", aftership)
    r.add_post("/webhooks/generic/{name}", generic)

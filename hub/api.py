"""The HTTP API (aiohttp), built by ``create_app(settings)``. Stateless: scale it horizontally.

Routes (see docs/api.md and ``/openapi.json``):

    POST   /v1/events                      one event          -> 202
    POST   /v1/events/batch                up to api.batch_limit events -> 202 | 207 | 422
    PUT    /v1/customers/{id}              contact fields     -> 201 | 200
    GET    /v1/customers/{id}
    PATCH  /v1/customers/{id}/preferences  any subset         -> 200
    DELETE /v1/customers/{id}              erase personal data -> 204
    GET    /v1/deliveries/{id}             delivery and milestone timeline
    GET    /v1/messages?delivery_id=|customer_id=
    GET    /v1/messages/{id}               one message with its status history
    GET    /v1/feedback?driver_id=         ratings per driver and day
    GET    /v1/webhooks/deliveries         outbound webhook deliveries (?status=dead ...)
    POST   /webhooks/twilio/sms            inbound SMS (Twilio-signed), answered with TwiML
    POST   /webhooks/twilio/status         message status callbacks (Twilio-signed)
    GET|POST /u/{token}                    e-mail unsubscribe (one-click, RFC 8058)
    GET    /healthz, /readyz, /openapi.json, /docs (the same, as a page)
    GET    /metrics                        Prometheus text exposition (when ops.metrics)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels import TwilioSms
from preferences import Contact, CustomerStore, Preferences, check_phone

from . import jsonbody, keys, metrics
from .adapters import AdapterDeps, add_adapter_routes
from .apidocs import add_docs_route
from .apikeys import KEY_PREFIX, KeyRing
from .config import ApiKey, Settings, check_secrets, hash_key, weak_secrets
from .conversation import Conversations, feedback_summary
from .erasure import erase_customer
from .errors import ApiError, error_response
from .links import Links
from .masking import mask, mask_phone
from .openapi import openapi_document
from .relay import PoolExhausted, Relay, RelayUnavailable
from .render import Renderer
from .replay import replay_messages
from .schema import Event, EventInvalid, PushReceipt, ReplayRequest, parse_event, validation_fields
from .status import STATUS_RANK
from .store import HubStore
from .track import TrackDeps, add_track_routes
from .twilio_hooks import add_twilio_routes
from .webhooks import Webhooks

__all__ = ["create_app"]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", HubStore)
CUSTOMERS = web.AppKey("customers", CustomerStore)
LINKS = web.AppKey("links", Links)
CONVERSATIONS = web.AppKey("conversations", Conversations)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
RELAY = web.AppKey("relay", Relay)
SMS = web.AppKey("sms", TwilioSms)
KEYRING = web.AppKey("keyring", KeyRing)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[IPNetwork, ...])
STOPPING = web.AppKey("stopping", asyncio.Event)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")  # the same rule as ids in events
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- middleware ------------------------------------------------------------------------------
@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TooManyFailures as e:
        return error_response(e.status, e.code, e.message, headers={"Retry-After": str(e.retry_after)})
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.fields)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].api.max_body_bytes
        return error_response(413, "body_too_large", f"request body is over the {limit}-byte limit")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        return error_response(e.status, code, e.reason, headers={k: v for k, v in e.headers.items() if k == "Allow"})
    except RedisError:
        log.exception("redis unavailable")
        return error_response(
            503, "store_unavailable", "the store is unavailable; retry later", headers={"Retry-After": "5"}
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; it has been logged")


# -- authentication --------------------------------------------------------------------------
class TooManyFailures(ApiError):
    """A 429 for a client or a key over ``api.auth_failures_per_minute``, with its Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "too_many_failures", f"too many requests with a wrong API key; retry in {retry_after} s")
        self.retry_after = retry_after


def _ip(text: str) -> IPAddress | None:
    """An address as written in X-Forwarded-For (also ``1.2.3.4:port`` and ``[v6]:port``)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: web.Request) -> str:
    """The client's address: the connection's, or, when that is a trusted proxy
    (``api.trusted_proxies``), the nearest address in X-Forwarded-For that is not one; addresses a
    client wrote into the header itself, left of those the proxies appended, are never read."""
    peer = request.remote or "unknown"
    proxies = request.app[TRUSTED_PROXIES]
    address = _ip(peer)
    if not proxies or address is None or not any(address in net for net in proxies):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
    for hop in reversed(hops):
        seen = _ip(hop)
        if seen is None:
            break  # the proxy wrote no address: the client is unknown, the proxy counts
        address = seen
        if not any(address in net for net in proxies):
            break
    return str(address)


def _credential_ref(token: str) -> str:
    """What a presented key is counted under: a digest (never the key), after the key's public id
    prefix for keys made by `hub keys create` (the prefix `hub keys list` shows)."""
    digest = hashlib.sha256(b"auth-failure\x1f" + token.encode()).hexdigest()[:32]
    prefix = token[:8] if token.startswith(KEY_PREFIX) and re.fullmatch(r"[A-Za-z0-9_-]{8}", token[:8]) else ""
    return f"{prefix}:{digest}" if prefix else digest


async def _refuse(request: web.Request, token: str, message: str) -> ApiError:
    """Count a failed authentication per client address and per presented key, each in a one-minute
    window; the 401, or a 429 once either is over ``api.auth_failures_per_minute``. Only failures
    are counted and only they are refused, so no one's wrong keys ever stop a valid key."""
    settings = request.app[SETTINGS]
    counters = [keys.auth_failures(f"addr:{client_address(request)}")]
    if token:
        counters.append(keys.auth_failures(f"key:{_credential_ref(token)}"))
    try:
        async with request.app[REDIS].pipeline(transaction=True) as pipe:
            for counter in counters:
                pipe.set(counter, 0, ex=60, nx=True)  # the window starts with the first failure
                pipe.incr(counter)
                pipe.ttl(counter)
            results = await pipe.execute()
    except RedisError:
        return ApiError(401, "unauthorized", message)  # nothing to count with; the answer stays right
    limit = settings.api.auth_failures_per_minute
    waits = [int(results[i + 2]) for i in range(0, len(results), 3) if int(results[i + 1]) > limit]
    if waits:
        return TooManyFailures(max(1, *waits))
    return ApiError(401, "unauthorized", message)


async def authenticate(request: web.Request, scope: str) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise await _refuse(request, "", "missing API key: send 'Authorization: Bearer <key>'")
    digest = hash_key(token)
    match = None
    for key in request.app[SETTINGS].all_keys():
        if hmac.compare_digest(key.sha256, digest):
            match = key
    if match is None:
        match = await request.app[KEYRING].find(digest)
    if match is None:
        raise await _refuse(request, token, "unknown or revoked API key")
    if scope not in match.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
    return match


# -- helpers ---------------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    ctype = request.headers.get("Content-Type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        return jsonbody.loads(await request.read())
    except jsonbody.InvalidJson as e:
        raise ApiError(400, "invalid_json", str(e)) from e


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise ApiError(
            400, "invalid_id", f"{name} must be 1-128 letters, digits or _.:@/+-, starting with a letter or digit"
        )
    return value


def query_limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError as e:
        raise ApiError(400, "invalid_limit", "limit must be an integer", {"limit": "not an integer"}) from e
    if not 1 <= limit <= most:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {most}", {"limit": "out of range"})
    return limit


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=str))


def wants_unmasked(request: web.Request, key: ApiKey) -> bool:
    return request.query.get("reveal") in ("1", "true") and "admin" in key.scopes


# -- events ----------------------------------------------------------------------------------
async def _accept(app: web.Application, source: str, events: list[Event]) -> list[str]:
    """Register and enqueue events atomically; returns accepted | duplicate | conflict per event."""
    received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    items = [(source, e.event_id, e.digest(), {**e.to_job(), "received_at": received_at}) for e in events]
    states = await app[STORE].accept_events(items, received_at)
    answers = ["conflict" if s == "conflict" else "accepted" if s == "new" else "duplicate" for s in states]
    for event, answer in zip(events, answers, strict=True):
        labels = (metrics.event_type(event.type), source)
        if answer == "accepted":
            metrics.EVENTS_ACCEPTED.labels(*labels).inc()
        elif answer == "duplicate":
            metrics.EVENTS_DUPLICATE.labels(*labels).inc()
        else:
            metrics.EVENTS_REJECTED.labels(*labels, "conflict").inc()
    return answers


def _count_invalid(source: str, payload: Any) -> None:
    kind = payload.get("type") if isinstance(payload, dict) else None
    metrics.EVENTS_REJECTED.labels(metrics.event_type(kind), source, "invalid").inc()


async def post_event(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    payload = await read_json(request)
    try:
        event = parse_event(payload, request.app[SETTINGS].default_region)
    except EventInvalid as e:
        _count_invalid(key.source, payload)
        raise ApiError(422, "validation_failed", "the event is invalid", e.fields) from e
    [status] = await _accept(request.app, key.source, [event])
    if status == "conflict":
        raise ApiError(
            409, "event_id_conflict", f"event_id {event.event_id!r} was already used with a different payload"
        )
    return json_response({"event_id": event.event_id, "status": status}, status=202)


async def post_batch(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    settings = request.app[SETTINGS]
    payload = await read_json(request)
    items = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ApiError(400, "invalid_batch", 'send a JSON array of events or {"events": [...]}')
    if len(items) > settings.api.batch_limit:
        raise ApiError(
            413, "batch_too_large", f"{len(items)} events in one batch; the limit is {settings.api.batch_limit}"
        )
    if not items:
        raise ApiError(400, "invalid_batch", "the batch is empty")
    results: list[dict[str, Any]] = []
    valid: list[tuple[int, Event]] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        try:
            event = parse_event(item, settings.default_region)
        except EventInvalid as e:
            _count_invalid(key.source, item)
            event_id = item.get("event_id") if isinstance(item, dict) else None
            results.append(
                {
                    "index": index,
                    "event_id": event_id,
                    "status": "rejected",
                    "error": {"code": "validation_failed", "message": "the event is invalid", "fields": e.fields},
                }
            )
            continue
        if event.event_id in seen:
            if seen[event.event_id] != event.digest():
                metrics.EVENTS_REJECTED.labels(metrics.event_type(event.type), key.source, "conflict").inc()
                results.append(
                    {
                        "index": index,
                        "event_id": event.event_id,
                        "status": "conflict",
                        "error": {
                            "code": "event_id_conflict",
                            "message": "event_id used twice in this batch with different payloads",
                        },
                    }
                )
            else:
                metrics.EVENTS_DUPLICATE.labels(metrics.event_type(event.type), key.source).inc()
                results.append({"index": index, "event_id": event.event_id, "status": "duplicate"})
            continue
        seen[event.event_id] = event.digest()
        results.append({"index": index, "event_id": event.event_id, "status": "pending"})
        valid.append((index, event))
    if valid:
        statuses = await _accept(request.app, key.source, [e for _, e in valid])
        for (index, event), status in zip(valid, statuses, strict=True):
            entry = results[index]
            entry["status"] = status
            if status == "conflict":
                entry["error"] = {
                    "code": "event_id_conflict",
                    "message": f"event_id {event.event_id!r} was already used with a different payload",
                }
    ok = sum(r["status"] in ("accepted", "duplicate") for r in results)
    summary = {
        "accepted": sum(r["status"] == "accepted" for r in results),
        "duplicate": sum(r["status"] == "duplicate" for r in results),
        "rejected": len(results) - ok,
    }
    code = 202 if ok == len(results) else (422 if ok == 0 else 207)
    return json_response({"results": results, "summary": summary}, status=code)


# -- customers -------------------------------------------------------------------------------
async def put_customer(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    customer_id = path_id(request)
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    payload.pop("id", None)
    try:
        contact = Contact.model_validate(payload, context={"region": request.app[SETTINGS].default_region})
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the customer is invalid", validation_fields(e)) from e
    created = await request.app[CUSTOMERS].replace(customer_id, contact.model_dump(exclude_none=True))
    record = await request.app[CUSTOMERS].get(customer_id)
    assert record is not None
    return json_response(record.to_json(unmask=wants_unmasked(request, key)), status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    record = await request.app[CUSTOMERS].get(path_id(request))
    if record is None:
        raise ApiError(404, "not_found", "no such customer")
    return json_response(record.to_json(unmask=wants_unmasked(request, key)))


async def patch_preferences(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    customer_id = path_id(request)
    payload = await read_json(request)
    try:
        prefs = Preferences.model_validate(payload)
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the preferences are invalid", validation_fields(e)) from e
    changes = prefs.model_dump(exclude_unset=True, mode="json")
    if not await request.app[CUSTOMERS].patch_preferences(customer_id, changes):
        raise ApiError(404, "not_found", "no such customer; create it with PUT /v1/customers/{id} first")
    record = await request.app[CUSTOMERS].get(customer_id)
    assert record is not None
    return json_response(record.to_json(unmask=wants_unmasked(request, key)))


async def delete_customer(request: web.Request) -> web.Response:
    await authenticate(request, "erase")
    customer_id = path_id(request)
    await erase_customer(request.app[REDIS], request.app[SETTINGS], request.app[RELAY], customer_id)
    return web.Response(status=204)


# -- deliveries and messages -----------------------------------------------------------------
async def get_delivery(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    delivery_id = path_id(request)
    store = request.app[STORE]
    delivery = await store.get_delivery(delivery_id)
    if delivery is None:
        raise ApiError(404, "not_found", "no such delivery")
    driver = delivery.get("driver")
    if driver and not wants_unmasked(request, key):
        driver["phone"] = mask_phone(driver.get("phone"))
    delivery["timeline"] = await store.timeline(delivery_id)
    return json_response(delivery)


def _message_view(message: dict[str, Any], unmask: bool) -> dict[str, Any]:
    if not unmask:
        message["to"] = mask(message.get("channel", ""), message.get("to"))
    return message


async def list_messages(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    delivery_id = request.query.get("delivery_id")
    customer_id = request.query.get("customer_id")
    status = request.query.get("status")
    if status is not None and status not in keys.INDEXED_STATUSES and not (delivery_id or customer_id):
        raise ApiError(
            400,
            "invalid_status",
            f"status alone must be one of {', '.join(keys.INDEXED_STATUSES)}; other statuses need a filter",
            {"status": "not a listed status"},
        )
    if not delivery_id and not customer_id and not status:
        raise ApiError(
            400,
            "missing_filter",
            "give delivery_id, customer_id or status",
            {"delivery_id": "required unless customer_id or status is given"},
        )
    limit = query_limit(request)
    store = request.app[STORE]
    if delivery_id or customer_id:
        messages = await store.list_messages(delivery_id=delivery_id, customer_id=customer_id, limit=limit)
    else:
        assert status is not None
        messages = await store.list_by_status(status, since_ms=_since_ms(request.query.get("since")), limit=limit)
    if delivery_id and customer_id:
        messages = [m for m in messages if m.get("customer_id") == customer_id]
    if status:
        messages = [m for m in messages if m.get("status") == status]
    unmask = wants_unmasked(request, key)
    return json_response({"messages": [_message_view(m, unmask) for m in messages]})


def _since_ms(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as e:
        raise ApiError(400, "invalid_since", "since must be an ISO 8601 time", {"since": "not a time"}) from e
    if when.tzinfo is None:
        raise ApiError(
            400, "invalid_since", "since needs a UTC offset, e.g. 2026-11-24T08:00:00Z", {"since": "no offset"}
        )
    return int(when.timestamp() * 1000)


async def replay_dead_messages(request: web.Request) -> web.Response:
    """Send dead-lettered messages again, by id or all since a time (admin)."""
    await authenticate(request, "admin")
    try:
        asked = ReplayRequest.model_validate(await read_json(request))
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the replay request is invalid", validation_fields(e)) from e
    ids = list(asked.ids)
    if asked.since is not None:
        since_ms = int(asked.since.timestamp() * 1000)
        dead = await request.app[STORE].list_by_status("dead", since_ms=since_ms, limit=1000)
        ids = list(dict.fromkeys([*ids, *(m["id"] for m in dead)]))
    queued = await replay_messages(request.app[REDIS], request.app[SETTINGS], ids)
    return json_response({"queued": queued, "not_dead": [i for i in ids if i not in set(queued)]}, status=202)


async def push_receipt(request: web.Request) -> web.Response:
    """The app confirms a push was shown: no API key, the receipt token from the push's data."""
    try:
        receipt = PushReceipt.model_validate(await read_json(request))
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the receipt is invalid", validation_fields(e)) from e
    if not request.app[LINKS].receipt_valid(receipt.message_id, receipt.receipt):
        raise ApiError(403, "invalid_receipt", "the receipt does not match the message")
    store = request.app[STORE]
    message = await store.message_fields(receipt.message_id)
    if not message or message.get("channel") != "push":
        raise ApiError(404, "not_found", "no such push message")
    if await store.status_forward(receipt.message_id, "delivered", STATUS_RANK["delivered"], ""):
        metrics.MESSAGES.labels("push", "delivered").inc()
    return web.Response(status=204)


async def get_message(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    message = await request.app[STORE].get_message(path_id(request))
    if message is None:
        raise ApiError(404, "not_found", "no such message")
    return json_response(_message_view(message, wants_unmasked(request, key)))


# -- unsubscribe -----------------------------------------------------------------------------
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
<h1>{title}</h1>{body}</body></html>"""


async def unsubscribe(request: web.Request) -> web.Response:
    app = request.app
    customer_id = app[LINKS].unsubscribe_customer_id(request.match_info["token"])
    record = await app[CUSTOMERS].get(customer_id) if customer_id else None
    if record is None:
        page = _PAGE.format(title="Link not valid", body="<p>This unsubscribe link is not valid.</p>")
        return web.Response(status=404, text=page, content_type="text/html")
    if request.method == "GET":
        body = (
            '<p>Stop delivery updates by e-mail?</p><form method="post">'
            '<button type="submit">Unsubscribe from e-mail</button></form>'
        )
        return web.Response(text=_PAGE.format(title="Unsubscribe", body=body), content_type="text/html")
    if not record.erased:
        opted = sorted(set(record.prefs.get("opt_out") or []) | {"email"})
        await app[CUSTOMERS].patch_preferences(record.id, {"opt_out": opted})
        log.info("customer unsubscribed from e-mail (one-click)")
    page = _PAGE.format(title="Unsubscribed", body=f"<p>{escape('You will get no more e-mail updates.')}</p>")
    return web.Response(text=page, content_type="text/html")


# -- masked-number relay ----------------------------------------------------------------------
async def open_relay(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    delivery_id = path_id(request)
    payload: Any = {}
    if request.can_read_body:
        payload = await read_json(request)
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_body", "send a JSON object or no body")
    region = request.app[SETTINGS].default_region
    numbers: dict[str, str | None] = {}
    problems: dict[str, str] = {}
    for field in ("driver_phone", "customer_phone"):
        if payload.get(field) is not None:
            try:
                numbers[field] = check_phone(str(payload[field]), region)
            except ValueError as e:
                problems[field] = str(e)
    if problems:
        raise ApiError(422, "validation_failed", "the relay request is invalid", problems)
    delivery = await request.app[STORE].get_delivery(delivery_id)
    if delivery is None and len(numbers) < 2:
        raise ApiError(404, "not_found", "no such delivery; give driver_phone and customer_phone to open anyway")
    if "driver_phone" not in numbers:
        numbers["driver_phone"] = ((delivery or {}).get("driver") or {}).get("phone")
    if "customer_phone" not in numbers and delivery and delivery.get("customer_id"):
        customer = await request.app[CUSTOMERS].get(delivery["customer_id"])
        numbers["customer_phone"] = customer.phone if customer and not customer.erased else None
    numbers.setdefault("customer_phone", None)
    missing = {f: "unknown; give it in the body" for f, v in numbers.items() if not v}
    if missing:
        raise ApiError(409, "numbers_missing", "the driver's or the customer's number is not known", missing)
    try:
        session, created = await request.app[RELAY].open(
            delivery_id, str(numbers["driver_phone"]), str(numbers["customer_phone"])
        )
    except PoolExhausted as e:
        raise ApiError(503, "relay_pool_exhausted", str(e)) from e
    except RelayUnavailable as e:
        raise ApiError(503, "relay_unavailable", str(e)) from e
    return json_response(
        Relay.public_view(session, unmask=wants_unmasked(request, key)), status=201 if created else 200
    )


async def get_relay(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    relay = request.app[RELAY]
    session = await relay.for_delivery(path_id(request))
    if session is None:
        raise ApiError(404, "not_found", "this delivery has no relay session")
    view = relay.public_view(session, unmask=wants_unmasked(request, key))
    view["interactions"] = await relay.interactions(session["id"])
    return json_response(view)


async def close_relay(request: web.Request) -> web.Response:
    await authenticate(request, "events")
    relay = request.app[RELAY]
    session = await relay.for_delivery(path_id(request))
    if session is None or session.get("status") != "open":
        raise ApiError(404, "not_found", "this delivery has no open relay session")
    await relay.close(session["id"], reason="closed by request")
    return web.Response(status=204)


# -- feedback and webhook deliveries ----------------------------------------------------------
async def get_feedback(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    driver_id = request.query.get("driver_id", "")
    if not _ID.match(driver_id):
        raise ApiError(400, "missing_filter", "give driver_id", {"driver_id": "required"})
    return json_response(await feedback_summary(request.app[REDIS], driver_id))


async def list_webhook_deliveries(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    status = request.query.get("status")
    if status and status not in ("pending", "retrying", "delivered", "dead"):
        raise ApiError(
            400, "invalid_status", "status is one of pending, retrying, delivered, dead", {"status": "unknown status"}
        )
    limit = query_limit(request)
    rows = await request.app[WEBHOOKS].list(status=status, event_type=request.query.get("type"), limit=limit)
    return json_response({"deliveries": rows})


# -- health ----------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


_REDIS_PATIENCE = 2.0  # seconds a readiness or metrics check waits for Redis before calling it unreachable


async def _queue_stats(redis: Redis, queue: str, now_ms: int) -> metrics.QueueStats:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zcard(queue)
        pipe.zrangebyscore(queue, "-inf", now_ms, start=0, num=1, withscores=True)
        due, total, oldest = await pipe.execute()
    # A job's score is when it became due (enqueued, or its deferral ended), so the oldest due
    # job's age is how long the queue has kept it waiting (or, while it runs, how long it runs).
    age = max(0.0, (now_ms - float(oldest[0][1])) / 1000) if oldest else 0.0
    return metrics.QueueStats(int(due), int(total) - int(due), age)


async def health(app: web.Application) -> tuple[list[str], metrics.ScrapeTime]:
    """Readiness problems (none: ready) and the scrape-time gauges, from one look at Redis."""
    settings = app[SETTINGS]
    ops = settings.ops
    problems: list[str] = []
    if app[STOPPING].is_set():
        problems.append("shutting down")
    queues: dict[str, metrics.QueueStats] = {}
    workers, heartbeat_age, redis_up = 0, None, True
    now = time.time()
    try:
        async with asyncio.timeout(_REDIS_PATIENCE):
            redis = app[REDIS]
            await redis.ping()
            beats = await redis.zrangebyscore(keys.WORKER_HEARTBEAT, "-inf", "+inf", withscores=True)
            now_ms = int(now * 1000)
            queues["events"] = await _queue_stats(redis, settings.worker.queue_name, now_ms)
            queues["webhooks"] = await _queue_stats(redis, settings.webhooks.queue_name, now_ms)
    except (RedisError, OSError, TimeoutError):
        redis_up = False
        problems.append("redis unreachable")
    else:
        # The webhook worker beats under "webhooks:..."; readiness is about the event workers.
        ages = [now - float(score) for name, score in beats if not str(name).startswith("webhooks:")]
        workers = sum(age <= ops.ready_heartbeat_seconds for age in ages)
        heartbeat_age = max(0.0, min(ages)) if ages else None
        if workers == 0:
            problems.append(f"no worker heartbeat in the last {ops.ready_heartbeat_seconds:g} s")
        oldest = queues["events"].oldest_age
        if oldest > ops.ready_max_queue_age_seconds:
            problems.append(
                f"the event queue's oldest due job has waited {oldest:.0f} s"
                f" (limit {ops.ready_max_queue_age_seconds:g} s)"
            )
    gauges = metrics.ScrapeTime(
        redis_up=redis_up, queues=queues, workers=workers, heartbeat_age=heartbeat_age, ready=not problems
    )
    return problems, gauges


async def readyz(request: web.Request) -> web.Response:
    problems, gauges = await health(request.app)
    checks = {
        "redis": "ok" if gauges.redis_up else "unreachable",
        "workers": gauges.workers,
        "queue_oldest_age_seconds": round(gauges.queues["events"].oldest_age, 3) if gauges.redis_up else None,
    }
    if problems:
        return json_response({"status": "unavailable", "problems": problems, "checks": checks}, status=503)
    return json_response({"status": "ready", "checks": checks})


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition: this process's counters and the gauges read from Redis now."""
    _, gauges = await health(request.app)
    body = metrics.exposition([gauges])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS].public_url))


# -- factory ---------------------------------------------------------------------------------
def create_app(settings: Settings, *, extra_setup: Callable[[web.Application], None] | None = None) -> web.Application:
    if not settings.redis_url:
        raise ValueError("redis_url is required (set HUB_REDIS_URL)")
    if not settings.secret_key:
        raise ValueError("secret_key is required (set HUB_SECRET_KEY)")
    if not settings.all_keys():
        raise ValueError("no API keys configured (set HUB_API_KEY or api.keys)")
    check_secrets(settings)  # a hub others can reach starts only with strong secrets
    weak = {name: problem for name, problem in weak_secrets(settings).items() if name != "twilio.auth_token"}
    if weak:  # a local run (hub dev's sandbox has the sandbox's Twilio token by design)
        log.warning("weak secrets accepted only because public_url is on this machine: %s", "; ".join(weak.values()))
    app = web.Application(middlewares=[errors_middleware], client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[TRUSTED_PROXIES] = tuple(ipaddress.ip_network(net) for net in settings.api.trusted_proxies)
    app[LINKS] = Links(settings.secret_key, settings.public_url)
    app[STOPPING] = asyncio.Event()

    async def connect(app: web.Application) -> None:
        redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
        app[REDIS] = redis
        app[STORE] = HubStore(redis, settings)
        app[CUSTOMERS] = CustomerStore(redis)
        app[CONVERSATIONS] = Conversations(
            redis, settings, Renderer(settings.templates_dir, settings.default_locale), app[CUSTOMERS]
        )
        app[WEBHOOKS] = app[CONVERSATIONS].webhooks
        app[RELAY] = Relay(redis, settings)
        app[KEYRING] = KeyRing(redis)
        tw = settings.twilio
        app[SMS] = TwilioSms(
            account_sid=tw.account_sid,
            auth_token=tw.auth_token,
            from_number=tw.from_number,
            messaging_service_sid=tw.messaging_service_sid,
            status_callback=None,
            base_url=tw.base_url,
            timeout=tw.timeout,
        )

    async def disconnect(app: web.Application) -> None:
        await app[SMS].close()
        await app[REDIS].aclose()

    async def stopping(app: web.Application) -> None:
        # aiohttp runs this once the listener is closed, before in-flight requests are awaited:
        # a readiness probe on a kept-alive connection sees 503 from here on.
        app[STOPPING].set()

    app.on_startup.append(connect)
    app.on_shutdown.append(stopping)
    app.on_cleanup.append(disconnect)
    r = app.router
    r.add_post("/v1/events", post_event)
    r.add_post("/v1/events/batch", post_batch)
    r.add_put("/v1/customers/{id}", put_customer)
    r.add_get("/v1/customers/{id}", get_customer)
    r.add_delete("/v1/customers/{id}", delete_customer)
    r.add_patch("/v1/customers/{id}/preferences", patch_preferences)
    r.add_get("/v1/deliveries/{id}", get_delivery)
    r.add_get("/v1/messages", list_messages)
    r.add_post("/v1/messages/replay", replay_dead_messages)
    r.add_get("/v1/messages/{id}", get_message)
    r.add_post("/v1/push/receipts", push_receipt)
    r.add_get("/u/{token}", unsubscribe)
    r.add_post("/u/{token}", unsubscribe)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    if settings.ops.metrics:
        r.add_get("/metrics", metrics_endpoint)
    r.add_get("/openapi.json", openapi)
    add_docs_route(app)
    r.add_get("/v1/feedback", get_feedback)
    r.add_get("/v1/webhooks/deliveries", list_webhook_deliveries)
    r.add_post("/v1/deliveries/{id}/relay", open_relay)
    r.add_get("/v1/deliveries/{id}/relay", get_relay)
    r.add_delete("/v1/deliveries/{id}/relay", close_relay)
    add_twilio_routes(app, SETTINGS, STORE, CONVERSATIONS, RELAY, SMS)
    add_track_routes(app, TrackDeps(SETTINGS, STORE, CUSTOMERS, LINKS, CONVERSATIONS, RELAY))
    add_adapter_routes(app, AdapterDeps(_accept, SETTINGS, CONVERSATIONS, CUSTOMERS))
    if extra_setup is not None:
        extra_setup(app)
    return app

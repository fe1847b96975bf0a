"""The masked-number relay of a delivery (hub.relay), opened, read and closed through the API.

    POST   /v1/deliveries/{id}/relay       open (idempotent)   -> 201 | 200
    GET    /v1/deliveries/{id}/relay       the session and its interactions
    DELETE /v1/deliveries/{id}/relay       close               -> 204

The calls and texts themselves come in through Twilio's webhooks (hub.twilio_hooks).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from preferences import check_phone

from .appkeys import CUSTOMERS, RELAY, SETTINGS, STORE
from .auth import authenticate
from .errors import ApiError
from .params import json_response, path_id, read_json, wants_unmasked
from .relay import PoolExhausted, Relay, RelayUnavailable

__all__ = ["add_routes"]


async def _given_numbers(request: web.Request) -> dict[str, str | None]:
    """The numbers the body gives (``driver_phone``, ``customer_phone``), each checked."""
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
    return numbers


async def open_relay(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    delivery_id = path_id(request)
    numbers = await _given_numbers(request)
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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/deliveries/{id}/relay", open_relay)
    r.add_get("/v1/deliveries/{id}/relay", get_relay)
    r.add_delete("/v1/deliveries/{id}/relay", close_relay)

"""Deliveries, messages, push receipts, ratings and outbound webhook deliveries, as the API reads them.

    GET    /v1/deliveries/{id}             delivery and milestone timeline
    GET    /v1/messages?delivery_id=|customer_id=|status=
    POST   /v1/messages/replay             send dead-lettered messages again (admin)
    GET    /v1/messages/{id}               one message with its status history
    POST   /v1/push/receipts               the app confirms a push was shown (no API key)
    GET    /v1/feedback?driver_id=         ratings per driver and day
    GET    /v1/webhooks/deliveries         outbound webhook deliveries (?status=dead ...)

Contact details are masked unless ``?reveal=true`` comes with an admin key.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from . import keys, metrics
from .appkeys import LINKS, REDIS, SETTINGS, STORE, WEBHOOKS
from .auth import authenticate
from .conversation import feedback_summary
from .errors import ApiError
from .masking import mask, mask_phone
from .params import ID, json_response, path_id, query_limit, query_since, read_json, wants_unmasked
from .replay import replay_messages
from .schema import PushReceipt, ReplayRequest, validation_fields
from .stats import Stats
from .status import STATUS_RANK

__all__ = ["add_routes"]


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


def _check_filters(delivery_id: str | None, customer_id: str | None, status: str | None) -> None:
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


async def list_messages(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    delivery_id = request.query.get("delivery_id")
    customer_id = request.query.get("customer_id")
    status = request.query.get("status")
    _check_filters(delivery_id, customer_id, status)
    limit = query_limit(request)
    store = request.app[STORE]
    if delivery_id or customer_id:
        messages = await store.list_messages(delivery_id=delivery_id, customer_id=customer_id, limit=limit)
    else:
        assert status is not None
        messages = await store.list_by_status(status, since_ms=query_since(request), limit=limit)
    if delivery_id and customer_id:
        messages = [m for m in messages if m.get("customer_id") == customer_id]
    if status:
        messages = [m for m in messages if m.get("status") == status]
    unmask = wants_unmasked(request, key)
    return json_response({"messages": [_message_view(m, unmask) for m in messages]})


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


Pushed = TypeVar("Pushed", bound=PushReceipt)


async def read_push(request: web.Request, model: type[Pushed], what: str) -> tuple[Pushed, dict[str, Any]]:
    """What the app posts about a push it showed (no API key: the receipt token from the push's
    data): the body as ``model``, and the push's message record; 422, 403 or 404 otherwise."""
    try:
        body = model.model_validate(await read_json(request))
    except ValidationError as e:
        raise ApiError(422, "validation_failed", f"the {what} is invalid", validation_fields(e)) from e
    if not request.app[LINKS].receipt_valid(body.message_id, body.receipt):
        raise ApiError(403, "invalid_receipt", "the receipt does not match the message")
    message = await request.app[STORE].message_fields(body.message_id)
    if not message or message.get("channel") != "push":
        raise ApiError(404, "not_found", "no such push message")
    return body, message


async def push_receipt(request: web.Request) -> web.Response:
    """The app confirms a push was shown."""
    receipt, message = await read_push(request, PushReceipt, "receipt")
    store = request.app[STORE]
    if await store.status_forward(receipt.message_id, "delivered", STATUS_RANK["delivered"], ""):
        metrics.MESSAGES.labels("push", "delivered").inc()
        await Stats(request.app[REDIS], request.app[SETTINGS]).message("push", "delivered", message.get("merchant_id"))
    return web.Response(status=204)


async def get_message(request: web.Request) -> web.Response:
    key = await authenticate(request, "read")
    message = await request.app[STORE].get_message(path_id(request))
    if message is None:
        raise ApiError(404, "not_found", "no such message")
    return json_response(_message_view(message, wants_unmasked(request, key)))


async def get_feedback(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    driver_id = request.query.get("driver_id", "")
    if not ID.match(driver_id):
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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/deliveries/{id}", get_delivery)
    r.add_get("/v1/messages", list_messages)
    r.add_post("/v1/messages/replay", replay_dead_messages)
    r.add_get("/v1/messages/{id}", get_message)
    r.add_post("/v1/push/receipts", push_receipt)
    r.add_get("/v1/feedback", get_feedback)
    r.add_get("/v1/webhooks/deliveries", list_webhook_deliveries)

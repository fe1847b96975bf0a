"""Customers: contact details, preferences, erasure, and the one-click e-mail unsubscribe.

    PUT    /v1/customers/{id}              contact fields      -> 201 | 200
    GET    /v1/customers/{id}
    PATCH  /v1/customers/{id}/preferences  any subset          -> 200
    DELETE /v1/customers/{id}              erase personal data -> 204
    GET|POST /u/{token}                    e-mail unsubscribe (one-click, RFC 8058)

Contact details are masked unless ``?reveal=true`` comes with an admin key.
"""

from __future__ import annotations

import logging
from html import escape

from aiohttp import web
from pydantic import ValidationError

from preferences import Contact, Preferences

from .appkeys import CUSTOMERS, LINKS, REDIS, RELAY, SETTINGS
from .auth import authenticate
from .erasure import erase_customer
from .errors import ApiError
from .params import json_response, path_id, read_json, wants_unmasked
from .schema import validation_fields

__all__ = ["add_routes"]

log = logging.getLogger(__name__)


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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/v1/customers/{id}", put_customer)
    r.add_get("/v1/customers/{id}", get_customer)
    r.add_delete("/v1/customers/{id}", delete_customer)
    r.add_patch("/v1/customers/{id}/preferences", patch_preferences)
    r.add_get("/u/{token}", unsubscribe)
    r.add_post("/u/{token}", unsubscribe)

"""Merchants (shops): the identity a delivery's messages and tracking page carry (hub.merchants).

    PUT    /v1/merchants/{id}   create or replace   -> 201 | 200   (scope events)
    GET    /v1/merchants/{id}                                      (scope read)
    DELETE /v1/merchants/{id}   the API's entry     -> 204 | 404   (scope events)
    GET    /v1/merchants        every shop in force                (scope read)

Registering shops is part of what an upstream system does beside posting events, so writes take
the ``events`` scope, like customers. Shops listed in the configuration (``brands.merchants``)
are read-only here: a PUT with the same id overrides one, a DELETE of that override brings it
back, and a DELETE of an id only the configuration has is a 409.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import ValidationError

from .appkeys import MERCHANTS, REDIS, SETTINGS
from .auth import authenticate
from .errors import ApiError
from .merchants import MERCHANT_ID, Merchant, Merchants
from .params import json_response, read_json
from .schema import validation_fields

__all__ = ["add_routes"]

_ID = re.compile(MERCHANT_ID)


def _merchant_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not _ID.match(value):
        raise ApiError(
            400,
            "invalid_id",
            "id must be 1-64 letters, digits or _.-, starting with one of the first two",
            {"id": value[:80]},
        )
    return value


async def put_merchant(request: web.Request) -> web.Response:
    await authenticate(request, "events")
    merchant_id = _merchant_id(request)
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    if payload.pop("id", merchant_id) != merchant_id:
        raise ApiError(422, "validation_failed", "the merchant is invalid", {"id": "differs from the id in the path"})
    try:
        merchant = Merchant.model_validate(payload, context={"region": request.app[SETTINGS].default_region})
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the merchant is invalid", validation_fields(e)) from e
    created = await request.app[MERCHANTS].put(merchant_id, merchant)
    return json_response(merchant.view(merchant_id, "api"), status=201 if created else 200)


async def get_merchant(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    merchant_id = _merchant_id(request)
    merchants = request.app[MERCHANTS]
    source = await merchants.source_of(merchant_id)
    found = await merchants.get(merchant_id) if source else None
    if source is None or found is None:
        raise ApiError(404, "not_found", "no such merchant")
    return json_response(found.view(merchant_id, source))


async def delete_merchant(request: web.Request) -> web.Response:
    await authenticate(request, "events")
    merchant_id = _merchant_id(request)
    merchants = request.app[MERCHANTS]
    if await merchants.delete(merchant_id):
        return web.Response(status=204)
    if merchant_id in merchants.base:
        raise ApiError(409, "configured", "this merchant is in the configuration (brands.merchants); remove it there")
    raise ApiError(404, "not_found", "no such merchant")


async def list_merchants(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    return json_response({"merchants": await request.app[MERCHANTS].listing()})


async def _start(app: web.Application) -> None:
    brands = app[SETTINGS].brands
    # Every read in this process goes through one store, so its own changes are seen at once.
    app[MERCHANTS] = Merchants(app[REDIS], brands.merchants, brands.cache_seconds)


def add_routes(app: web.Application) -> None:
    app.on_startup.append(_start)  # after hub.api's, which connects Redis
    r = app.router
    r.add_get("/v1/merchants", list_merchants)
    r.add_put("/v1/merchants/{id}", put_merchant)
    r.add_get("/v1/merchants/{id}", get_merchant)
    r.add_delete("/v1/merchants/{id}", delete_merchant)

"""The driver app's position reports (hub.location).

    POST /v1/deliveries/{id}/location   {"lat", "lon", "at", "stops_before"}
        200 {"status": "stored"} | 200 {"status": "ignored", "reason": "older" | "expired"}
        404 no such delivery · 409 not_out_for_delivery | customer_erased · 422 fields at fault

Scope ``events``. The answer never echoes the position, and nothing here logs one.
"""

from __future__ import annotations

import time

from aiohttp import web

from .appkeys import REDIS, SETTINGS
from .auth import authenticate
from .errors import ApiError
from .location import Outcome, Positions, ReportInvalid, parse_report
from .params import json_response, path_id, read_json

__all__ = ["add_routes"]

_IGNORED = {
    Outcome.OLDER: "a newer position of this delivery is stored",
    Outcome.EXPIRED: "the position is older than tracking.map_position_minutes",
}


async def post_location(request: web.Request) -> web.Response:
    await authenticate(request, "events")
    delivery_id = path_id(request)
    payload = await read_json(request)
    now = time.time()
    try:
        report = parse_report(payload, now)
    except ReportInvalid as e:
        raise ApiError(422, "validation_failed", "the location is invalid", e.fields) from e
    stored = await Positions(request.app[REDIS], request.app[SETTINGS].tracking).store(delivery_id, report, now)
    if stored.outcome is Outcome.NO_DELIVERY:
        raise ApiError(404, "not_found", "no such delivery")
    if stored.outcome is Outcome.OFF_THE_ROAD:
        raise ApiError(
            409,
            "not_out_for_delivery",
            f"the delivery is {stored.status}; positions are taken only while it is out for delivery",
        )
    if stored.outcome is Outcome.ERASED:
        raise ApiError(409, "customer_erased", "the delivery's customer was erased; no position is kept")
    if stored.outcome is Outcome.STORED:
        return json_response({"delivery_id": delivery_id, "status": "stored"})
    reason = stored.outcome.value
    return json_response(
        {"delivery_id": delivery_id, "status": "ignored", "reason": reason, "message": _IGNORED[stored.outcome]}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/deliveries/{id}/location", post_location)

"""The operators' follow-up list of low ratings, and ratings per driver and per shop (hub.feedback).

    GET    /v1/feedback/followups?status=open|handled|all&limit=    (read)
    POST   /v1/feedback/followups/{delivery_id}/handled             (events) body {"by"} optional
    GET    /v1/ratings?by=driver|merchant                           (read)

Marking handled takes the ``events`` scope: the systems that receive ``feedback.low`` (a shop's
or a carrier's back office, a ticket tool) close the loop with the key they post events with,
without holding an admin key. The per-driver listing by day stays ``GET /v1/feedback``
(hub.api_messages).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .appkeys import REDIS, SETTINGS
from .auth import authenticate
from .errors import ApiError
from .feedback import FOLLOWUP_STATUSES, RATING_GROUPS, followup, list_followups, mark_handled, ratings_summary
from .params import json_response, path_id, query_limit, read_json
from .schema import validation_fields

__all__ = ["HandledRequest", "add_routes"]


class HandledRequest(BaseModel):
    """Who handled a follow-up (default: the API key's source)."""

    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(None, min_length=1, max_length=128, description="who handled it (a name, a ticket id)")


async def get_followups(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    status = request.query.get("status", "open")
    if status not in FOLLOWUP_STATUSES:
        raise ApiError(
            400,
            "invalid_status",
            f"status is one of {', '.join(FOLLOWUP_STATUSES)}",
            {"status": "unknown status"},
        )
    limit = query_limit(request)
    rows = await list_followups(request.app[REDIS], request.app[SETTINGS], status, limit)
    return json_response({"status": status, "followups": rows})


async def post_handled(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    delivery_id = path_id(request, "delivery_id")
    by = key.source
    if request.body_exists:
        body = await read_json(request)
        try:
            asked = HandledRequest.model_validate(body)
        except ValidationError as e:
            raise ApiError(422, "validation_failed", "the request is invalid", validation_fields(e)) from e
        by = asked.by or by
    redis = request.app[REDIS]
    if not await mark_handled(redis, request.app[SETTINGS], delivery_id, by):
        raise ApiError(404, "not_found", "no follow-up for this delivery")
    entry = await followup(redis, delivery_id)
    if entry is None:  # expired between the two reads
        raise ApiError(404, "not_found", "no follow-up for this delivery")
    return json_response(entry)


async def get_ratings(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    by = request.query.get("by", "")
    if by not in RATING_GROUPS:
        raise ApiError(
            400,
            "invalid_by",
            f"by is one of {', '.join(RATING_GROUPS)}",
            {"by": "required: driver or merchant"},
        )
    rows = await ratings_summary(request.app[REDIS], request.app[SETTINGS], by)
    return json_response({"by": by, "ratings": rows})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/feedback/followups", get_followups)
    r.add_post("/v1/feedback/followups/{delivery_id}/handled", post_handled)
    r.add_get("/v1/ratings", get_ratings)

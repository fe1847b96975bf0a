"""When customers are home, for upstream systems and route planners (hub.availability).

    GET  /v1/customers/{id}/availability   every weekday x block of the customer's week: p_home
         and the evidence behind it, in the customer's zone, and the best five blocks
    POST /v1/availability/query            {"queries": [{"customer_id", "windows": [{"start",
         "end"}]}]}: p_home per customer and window, in the order asked

Scope ``read``. A customer the hub knows nothing of gets the prior of every customer (no 404:
a planner asks for whole routes, new customers included). Bad input is a 422 naming each field.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .appkeys import REDIS, SETTINGS
from .auth import authenticate
from .availability import Availability
from .availability_model import MAX_WINDOW
from .errors import ApiError
from .params import ID, json_response, path_id, read_json
from .schema import Timestamp, validation_fields

__all__ = [
    "AvailabilityAnswer",
    "AvailabilityQuery",
    "CustomerAvailability",
    "add_routes",
]

MAX_CUSTOMERS = 500
MAX_WINDOWS = 50
# A query at the limits (500 x 50 windows) is about 2 MB of JSON: the route takes up to this much
# whatever api.max_body_bytes says (a smaller body than that setting stays allowed too).
QUERY_BODY_BYTES = 4 * 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryWindow(_Strict):
    start: Timestamp = Field(description="ISO 8601 with a UTC offset")
    end: Timestamp = Field(description="ISO 8601 with a UTC offset; not before start, at most 7 days after it")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("an ISO 8601 time with a UTC offset, e.g. 2026-11-24T18:00:00+01:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> QueryWindow:
        if self.end < self.start:
            raise ValueError("end is before start")
        if self.end - self.start > MAX_WINDOW:
            raise ValueError("a window is at most 7 days long")
        return self


class CustomerQuery(_Strict):
    customer_id: str = Field(min_length=1, max_length=128, pattern=ID.pattern)
    windows: list[QueryWindow] = Field(min_length=1, max_length=MAX_WINDOWS)


class AvailabilityQuery(_Strict):
    """Candidate windows for many customers at once (a route)."""

    queries: list[CustomerQuery] = Field(min_length=1, max_length=MAX_CUSTOMERS)


class AvailabilityBlock(BaseModel):
    weekday: int = Field(ge=0, le=6, description="Monday 0")
    start: str = Field(description="local time HH:MM")
    end: str = Field(description="local time HH:MM")
    p_home: float = Field(ge=0, le=1)
    evidence: float = Field(ge=0, description="the weight of the customer's own observations of this block")


class CustomerAvailability(BaseModel):
    customer_id: str
    timezone: str
    area: str | None = Field(description="the pool the prior comes from; null: every customer's")
    blocks: list[AvailabilityBlock]
    best: list[AvailabilityBlock] = Field(description="the best blocks first, at most 5")


class WindowAnswer(BaseModel):
    start: str
    end: str
    p_home: float | None = Field(description="null: the window touches no time block")
    evidence: float


class CustomerAnswer(BaseModel):
    customer_id: str
    windows: list[WindowAnswer]


class AvailabilityAnswer(BaseModel):
    results: list[CustomerAnswer]


async def get_availability(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    customer_id = path_id(request)
    availability = Availability(request.app[REDIS], request.app[SETTINGS])
    return json_response(await availability.profile(customer_id))


def _parse(payload: Any) -> AvailabilityQuery:
    if not isinstance(payload, dict):
        raise ApiError(422, "validation_failed", "the query is invalid", {"body": "a JSON object with queries"})
    try:
        return AvailabilityQuery.model_validate(payload)
    except ValidationError as e:
        raise ApiError(422, "validation_failed", "the query is invalid", validation_fields(e)) from e


async def post_query(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    limit = max(QUERY_BODY_BYTES, request.app[SETTINGS].api.max_body_bytes)
    query = _parse(await read_json(request.clone(client_max_size=limit)))
    asked = [(q.customer_id, [(w.start, w.end) for w in q.windows]) for q in query.queries]
    availability = Availability(request.app[REDIS], request.app[SETTINGS])
    return json_response({"results": await availability.query(asked)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/customers/{id}/availability", get_availability)
    app.router.add_post("/v1/availability/query", post_query)

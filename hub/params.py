"""What the API's handlers read from a request and how they answer: the JSON body, a path id,
``limit`` and ``since`` from the query, and a JSON response. Each refusal is an ``ApiError``
with the code the API documents (415, 400 invalid_json, invalid_id, invalid_limit, invalid_since).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from . import jsonbody
from .config_sections import ApiKey
from .errors import ApiError
from .since import InvalidSince, since_ms

__all__ = ["ID", "json_response", "path_id", "query_limit", "query_since", "read_json", "wants_unmasked"]

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")  # the same rule as ids in events


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
    if not ID.match(value):
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


def query_since(request: web.Request) -> int:
    """``?since=`` in milliseconds since the epoch (0 without one); see ``hub.since``."""
    try:
        return since_ms(request.query.get("since"))
    except InvalidSince as e:
        raise ApiError(400, "invalid_since", e.message, {"since": e.problem}) from e


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=str))


def wants_unmasked(request: web.Request, key: ApiKey) -> bool:
    return request.query.get("reveal") in ("1", "true") and "admin" in key.scopes
